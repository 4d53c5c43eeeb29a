"""Bad input, config side: hypothesis throws generated YAML at the loader and the validator.

The promise: whatever the file holds (wrong types, huge numbers, unicode keys, deep
nesting, anchors and aliases, tabs, BOMs, CRs, truncation, binary, nothing at all),
``validate`` answers with findings, never a traceback; an error about the file itself
carries a line; alias bombs and oversized files are refused before they cost memory.
"""

from __future__ import annotations

import io
import math
import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from tunedeck.runner.config.schema import PARAMS
from tunedeck.runner.config.validate import Finding, validate_path
from tunedeck.runner.config.yamlio import MAX_FILE_BYTES, ConfigDoc
from tunedeck.runner.errors import ConfigError

from .summary import Scenario

KNOWN = sorted(PARAMS)
SEVERITIES = {"error", "warning", "advice"}
_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
CI_EXAMPLES = 500
SOAK_EXAMPLES = 5000

# -- values -----------------------------------------------------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64 + 1, 10**18, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 1e-9, 2e-5]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["", " ", "\t", "yes", "no", "on", "off", "null", "~", "1e-4", "0x1F", "0o17",
                     ".inf", "-.nan", "a,b,,c", "{{ template }}", "%TAG", "@reserved", "`cmd`",
                     "$(touch pwned)", "../../etc/passwd", "C:\\path", "\u202egnp.exe", "\x00x"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
_keys = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN).map(str.upper),
    st.text(min_size=1, max_size=24),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12),
    st.sampled_from(["<<", "? x", "- y", "a: b", "#c", "&x", "*y", "!tag", "\ufeffkey", "key\t"]),
)
_mappings = st.dictionaries(_keys, _values, max_size=12)


def _dump(data: dict[str, Any], flow: bool) -> str:
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = flow
    y.allow_unicode = True
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()


@st.composite
def yaml_texts(draw: st.DrawFn) -> str:
    """A YAML document, then zero or more of the mutations that break real configs."""
    data = draw(_mappings)
    try:
        text = _dump(data, draw(st.booleans()))
    except Exception:  # noqa: BLE001 - a value ruamel cannot dump: start from its repr
        text = repr(data)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(
            ["bom", "tabs", "crlf", "cr", "truncate", "anchor", "alias", "merge", "nest",
             "garbage", "dupe", "empty", "comment", "indent", "splice", "bytes"]))
        if kind == "bom":
            text = "\ufeff" + text
        elif kind == "tabs":
            text = text.replace("  ", "\t", draw(st.integers(1, 3)))
        elif kind == "crlf":
            text = text.replace("\n", "\r\n")
        elif kind == "cr":
            text = text.replace("\n", "\r")
        elif kind == "truncate" and text:
            text = text[: draw(st.integers(0, len(text)))]
        elif kind == "anchor":
            text = "base: &b {stage: sft, learning_rate: 1e-4}\n" + text
        elif kind == "alias":
            text = text + "\nlearning_rate: *b\n"
        elif kind == "merge":
            text = "base: &b {stage: sft}\n<<: *b\n" + text
        elif kind == "nest":
            depth = draw(st.integers(1, 80))
            if draw(st.booleans()):
                text += "deep: " + "[" * depth + "1" + "]" * depth + "\n"
            else:
                text += "".join("  " * i + "d:\n" for i in range(depth)) + "  " * depth + "x: 1\n"
        elif kind == "garbage":
            text += draw(st.text(max_size=30))
        elif kind == "dupe":
            text += "stage: sft\nstage: pt\n"
        elif kind == "empty":
            text = draw(st.sampled_from(["", "\n", "\ufeff", "---\n", "...\n", "# only a comment\n",
                                         "~\n", "[]\n", "- a\n", "'str'\n", "42\n"]))
        elif kind == "comment":
            text = "# " + draw(st.text(max_size=20)).replace("\n", " ") + "\n" + text
        elif kind == "indent":
            text = "".join(" " * draw(st.integers(0, 3)) + ln for ln in text.splitlines(keepends=True))
        elif kind == "splice" and text:
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(["{", "}", "[", "]", ":", "- ", "'", '"', "&", "*",
                                                      "!", "|", ">", "%", "@", "`", "\\"])) + text[at:]
        elif kind == "bytes":
            text += draw(st.binary(max_size=20)).decode("latin-1")
    return text


def load_state(path: Path) -> tuple[bool, set[str]]:
    """(loads without error, its top-level keys), the same way ``validate`` loads it."""
    try:
        return True, {str(k) for k in ConfigDoc.load(path).data}
    except ConfigError as exc:
        assert exc.line is not None, f"a load error without a line: {exc}"
        return False, set()


def check_findings(path: Path, findings: list[Finding], loaded: bool, present: set[str]) -> None:
    """The contract every answer of ``validate`` keeps, whatever the file held."""
    assert isinstance(findings, list)
    raw = path.read_bytes()
    # YAML breaks lines at CR, LF, CRLF, NEL, LS and PS: count them all (and plain LFs of
    # bytes that do not decode) for the highest line a finding may name.
    lines = max(raw.count(b"\n"), len(_BREAKS.findall(raw.decode("utf-8", "replace")))) + 1
    for f in findings:
        assert isinstance(f, Finding)
        assert f.severity in SEVERITIES
        assert f.message and isinstance(f.message, str)
        f.format()  # printable
        if f.line is not None:
            assert 1 <= f.line <= lines + 1, f
    if not loaded:
        # The file itself is the problem: exactly one error, pointing into the file.
        assert len(findings) == 1, (findings, raw[:300])
        assert findings[0].severity == "error" and findings[0].line is not None, (findings, raw[:300])
        return
    for f in findings:
        if f.key in present and f.file == str(path):
            assert f.line is not None, f"finding about {f.key!r}, which is in the file, has no line: {f}"


def _validate_one(tmp_path: Path, raw: bytes, *, check_files: bool) -> list[Finding]:
    p = tmp_path / "fuzz.yaml"
    p.write_bytes(raw)
    findings = validate_path(p, check_files=check_files, cuda_available=False)
    check_findings(p, findings, *load_state(p))
    return findings


@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning")
def test_fuzz_config_loader_and_validator_never_crash(tmp_path: Path, soak: bool, scenario) -> None:  # type: ignore[no-untyped-def]
    sc: Scenario = scenario("Config fuzzing (hypothesis): loader + validator")
    n = SOAK_EXAMPLES if soak else CI_EXAMPLES
    generated: list[int] = []

    # CI runs the same 500 examples every time (a red CI names a reproducible case);
    # --soak draws new ones on every run.
    @settings(max_examples=n, deadline=None, database=None, derandomize=not soak,
              suppress_health_check=list(HealthCheck))
    @given(text=yaml_texts(), check_files=st.booleans(), encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    def run(text: str, check_files: bool, encoding: str) -> None:
        generated.append(1)
        with sc.trial():
            raw = text.encode(encoding, "surrogatepass" if encoding == "utf-8" else "replace")
            _validate_one(tmp_path, raw, check_files=check_files)

    run()
    assert len(generated) >= n
    sc.note(f"{len(generated)} generated configs in this run")


# -- the hostile files, one by one ---------------------------------------------------
def _peak_mib(fn: Any) -> tuple[Any, float]:
    tracemalloc.start()
    try:
        out = fn()
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak / 2**20


BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)

# Fewer aliases (56) than the alias-count limit, yet 8**8 = 16.7 million values expanded.
QUIET_BOMB = "l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 8) + "]\n" for i in range(1, 8)
)

HOSTILE: dict[str, bytes] = {
    "alias bomb under the alias-count limit": QUIET_BOMB.encode(),
    "empty": b"",
    "bom only": b"\xef\xbb\xbf",
    "bom + config": b"\xef\xbb\xbfstage: sft\nlearning_rate: 1e-4\n",
    "only comments": b"# nothing here\n# at all\n",
    "tabs for indentation": b"stage: sft\n\tlearning_rate: 1e-4\n",
    "tab after colon": b"stage:\tsft\n",
    "billion laughs": BILLION_LAUGHS.encode(),
    "alias loop-ish": b"a: &a [*a]\n",
    "deep flow nesting": b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep block nesting (40)": "".join("  " * i + "a:\n" for i in range(40)).encode() + b"  " * 40 + b"x: 1\n",
    "deep block nesting (3000)": "".join("  " * i + "a:\n" for i in range(3000)).encode() + b"  " * 3000 + b"x: 1\n",
    "huge integer": b"max_steps: " + b"9" * 5000 + b"\n",
    "huge float": b"learning_rate: 1e99999\n",
    "nan and inf": b"learning_rate: .nan\nmax_grad_norm: .inf\nwarmup_ratio: -.inf\n",
    "python tags": b"learning_rate: !!python/object/apply:os.system ['touch pwned']\n",
    "unknown tag": b"stage: !custom sft\n",
    "binary tag": b"stage: !!binary aGVsbG8=\n",
    "set": b"stage: !!set {a, b}\n",
    "multi document": b"stage: sft\n---\nstage: pt\n",
    "duplicate key": b"stage: sft\nstage: pt\n",
    "top-level list": b"- stage: sft\n",
    "top-level scalar": b"just text\n",
    "complex key": b"? [1, 2]\n: 3\n",
    "null key": b"~: 1\n",
    "NUL byte": b"stage: s\x00ft\n",
    "invalid utf-8": b"stage: \xff\xfe sft\n",
    "utf-16": "stage: sft\n".encode("utf-16"),
    "lone surrogate escape": b'stage: "\\ud800"\n',
    "CR line ends": b"stage: sft\rlearning_rate: 1e-4\r",
    "unicode keys": "学习率: 1e-4\n\u202eegats: sft\n\U0001f600: 1\n".encode(),
    "many unknown keys": "".join(f"k{i}: {i}\n" for i in range(20000)).encode(),
    "a 1 MB value": b"stage: " + b"x" * 1_000_000 + b"\n",
    "unterminated quote": b'stage: "sft\nlearning_rate: 1\n',
    "unterminated flow": b"dataset: [a, b\n",
    "an unknown key merged in from an anchor": b"base: &b {s:tage: sft, learning_rate: abc}\n<<: *b\n",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_config_gives_findings_with_a_line_not_a_traceback(name: str, tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Hostile config files (alias bomb, 50 MB, nesting, BOM, tabs ...)")
    with sc.trial():
        p = tmp_path / "hostile.yaml"
        p.write_bytes(HOSTILE[name])
        size = len(HOSTILE[name])
        if size < 256 * 1024:
            findings, peak = _peak_mib(lambda: validate_path(p, check_files=True, cuda_available=False))
            # Bounded memory: a few MiB for a small file, never an expansion of it.
            assert peak < 32, f"{name}: peak {peak:.1f} MiB for a {size} byte file"
        else:  # tracemalloc makes ruamel's per-character scanner crawl: no memory probe here
            findings = validate_path(p, check_files=True, cuda_available=False)
        loaded, present = load_state(p)
        check_findings(p, findings, loaded, present)
        if name in ("billion laughs", "alias bomb under the alias-count limit"):
            assert not loaded
            assert "alias" in findings[0].message and findings[0].line is not None


def test_alias_bomb_is_refused_not_expanded(tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Hostile config files (alias bomb, 50 MB, nesting, BOM, tabs ...)")
    with sc.trial():
        (exc, peak) = _peak_mib(lambda: pytest.raises(ConfigError, ConfigDoc.loads, BILLION_LAUGHS, source="bomb.yaml"))
        err = exc.value
        assert "alias" in err.bare_message and err.line is not None and err.file == "bomb.yaml"
        assert peak < 16, f"expanding an alias bomb costs memory: peak {peak:.1f} MiB"


def test_a_50_mb_file_is_refused_before_it_is_read(tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Hostile config files (alias bomb, 50 MB, nesting, BOM, tabs ...)")
    with sc.trial():
        p = tmp_path / "huge.yaml"
        line = b"learning_rate: 1.0e-4  # " + b"x" * 100 + b"\n"
        with open(p, "wb") as fh:
            for _ in range((50 * 2**20) // len(line) + 1):
                fh.write(line)
        assert p.stat().st_size > 50 * 2**20
        findings, peak = _peak_mib(lambda: validate_path(p, check_files=True, cuda_available=False))
        assert len(findings) == 1 and findings[0].severity == "error" and findings[0].line == 1
        assert "MiB" in findings[0].message
        assert peak < 8, f"the 50 MB file was read: peak {peak:.1f} MiB"
        # The same text handed over in memory (a paste into the editor) is refused too.
        text = "x: 1\n" * ((MAX_FILE_BYTES // 5) + 1)
        with pytest.raises(ConfigError) as exc:
            ConfigDoc.loads(text, source="<paste>")
        assert exc.value.line == 1


def test_overrides_are_data_for_the_validator(tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    """``key=value`` from the command line goes through the same checks, never a traceback."""
    sc = scenario("Config fuzzing (hypothesis): loader + validator")
    base = tmp_path / "base.yaml"
    base.write_text("stage: sft\nlearning_rate: 1.0e-4\n")
    odd = ["learning_rate=" + "9" * 5000, "learning_rate=.nan", "stage=[1, [2, [3]]]", "max_steps={a: 1}",
           "x=*alias", "y=&anchor 1", "z=!!python/name:os.system", "dataset=" + "a," * 2000,
           "学习率=1", "learning_rate=1e99999", "cutoff_len=-1", "bf16=maybe"]
    for o in odd:
        with sc.trial():
            try:
                findings = validate_path(base, [o], check_files=False, cuda_available=False)
            except ConfigError as exc:  # refusing the override itself is a fine answer
                assert exc.message
                continue
            key = o.partition("=")[0]
            check_findings(base, [f for f in findings if f.file != "command line"], *load_state(base))
            for f in findings:
                if f.key == key:
                    assert f.file == "command line", f


def test_findings_are_json_clean(tmp_path: Path) -> None:
    """``validate --json`` must be able to print whatever the validator found."""
    import json

    p = tmp_path / "odd.yaml"
    p.write_text("learning_rate: .nan\nmax_steps: 1e400\nstage: !!binary aGVsbG8=\n学习率: 1\n")
    for f in validate_path(p, check_files=False, cuda_available=False):
        s = json.dumps(f.to_dict(), allow_nan=False)
        assert isinstance(json.loads(s), dict)
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in f.to_dict().values())

