"""Run control: launch argv, the detached supervisor, stop/resume, run manifests.

Never imports torch or Textual.
"""
