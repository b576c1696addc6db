"""App runtimes: what runs the apps whose volumes evesnap snapshots.

`loader.load_runtime(name, ...)` finds a runtime through the entry-point group
``evesnap.runtimes`` and wraps it in `Runtime`; evesnap-core ships ``qemu``
and ``embedded``.
"""
