"""tunedeck's Textual app. Imported only by ``runner/commands/tui.py`` (lazily).

How the parts reach each other (one rule, kept everywhere):

- **The core.** Screens, widgets and flows read and change runs and configs through
  :mod:`tunedeck.tui.data`; whatever touches the disk or a process runs in a thread worker.
- **App to screens: reactives.** The app (:mod:`tunedeck.tui.app`) owns the samplers and
  keeps what they saw in its reactives (``root``, ``runs_view``, ``gpu_view``, ``detail``,
  ``started_run``); the dashboard binds them (``data_bind``) and paints in its ``watch_``
  methods. The app calls no method of a screen.
- **Screens to the app: messages.** A screen tells the app what it must know by posting a
  message (:mod:`tunedeck.tui.messages`: ``RunSelected``, ``MetricChosen``); no screen calls
  an app method by name. A screen may push another screen (``self.app.push_screen``).
- **Flows.** What one user action does across dialogs and workers (stop, resume, launch,
  open/new/edit a config, the runs root) is a function in :mod:`tunedeck.tui.flows`; a
  screen starts it with ``<module>.<function>(host(self), ...)``. A flow sees the app only as
  a :class:`~tunedeck.tui.flows.FlowHost` and reports back by messages (``RunsChanged``,
  ``RootChosen``).
"""
