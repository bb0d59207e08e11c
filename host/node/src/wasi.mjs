/**
 * The WASI interfaces the Rust standard library pulls into the guest, from
 * @bytecodealliance/preview2-shim, narrowed to grant what the Rust host
 * grants: nothing. The shim's defaults would hand the guest the host's whole
 * environment (QBO_ACCESS_TOKEN included) and its real stdout.
 */
// Subpaths, not the package root: the root also loads the filesystem,
// sockets and http shims, which this guest does not import.
import * as cli from '@bytecodealliance/preview2-shim/cli';
import * as io from '@bytecodealliance/preview2-shim/io';
import * as random from '@bytecodealliance/preview2-shim/random';

export function wasiImports() {
  return {
    // No variables, no arguments, no working directory.
    'wasi:cli/environment': {
      getEnvironment: () => [],
      getArguments: () => [],
      initialCwd: () => undefined,
    },
    // The shim would `process.exit` without a summary line; trap instead.
    'wasi:cli/exit': {
      exit: (status) => {
        throw new Error(`the component called exit (${status?.tag ?? 'ok'})`);
      },
    },
    'wasi:cli/stdin': cli.stdin,
    // stdout carries only the host's summary line; the guest's prints
    // (a panic message, say) go to stderr.
    'wasi:cli/stdout': { getStdout: () => cli.stderr.getStderr() },
    'wasi:cli/stderr': cli.stderr,
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stdin': cli.terminalStdin,
    'wasi:cli/terminal-stdout': cli.terminalStdout,
    'wasi:cli/terminal-stderr': cli.terminalStderr,
    'wasi:io/error': io.error,
    'wasi:io/poll': io.poll,
    'wasi:io/streams': io.streams,
    'wasi:random/insecure-seed': random.insecureSeed,
  };
}
