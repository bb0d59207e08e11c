"""Runs a WASI command (a component exporting wasi:cli/run) in wasmtime-py.

Usage: python3 wasmtime_py_run.py <command.wasm> <state-dir>

Gives the command outgoing wasi:http, <state-dir> preopened as /state, and
the SYNC_* variables of this process's environment (nothing else), as
`wasmtime run -S http --dir <state-dir>::/state --env SYNC_…` does. Exits
with the command's status: 0 when `run` returns ok, 1 when it returns an
error, the exit code when it calls wasi:cli/exit.
"""
import os
import sys

import wasmtime
import wasmtime.component as component


def main() -> int:
    command, state = sys.argv[1], sys.argv[2]
    engine = wasmtime.Engine()
    loaded = component.Component.from_file(engine, command)
    linker = component.Linker(engine)
    linker.add_wasip2()  # wasi:http needs it first
    linker.add_wasi_http()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    # A setter property, not a method.
    wasi.env = [(k, v) for k, v in os.environ.items() if k.startswith("SYNC_")]
    wasi.preopen_dir(state, "/state")
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    store.set_wasi_http()
    instance = linker.instantiate(store, loaded)
    # Matches any semver-compatible wasi:cli/run@0.2.x.
    interface = instance.get_export_index(store, "wasi:cli/run@0.2.0")
    if interface is None:
        print("error: the component exports no wasi:cli/run", file=sys.stderr)
        return 2
    run = instance.get_func(store, instance.get_export_index(store, "run", interface))
    try:
        result = run(store)
        run.post_return(store)
    except wasmtime.ExitTrap as exit:
        return exit.code
    return 0 if getattr(result, "tag", "ok") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
