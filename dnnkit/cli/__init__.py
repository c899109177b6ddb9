"""The ``dnnkit`` command line: thin argument parsing over the Python API.

Exit codes: 0 ok, 1 a check or run failed, 2 bad input (one line on stderr, no traceback).
Nothing heavy is imported until a subcommand runs, so ``dnnkit --help`` stays fast: the parser
(:mod:`dnnkit.cli.parser`) and the commands (:mod:`dnnkit.cli.commands`) import argparse only.

May import: :mod:`dnnkit.jobs`, :mod:`dnnkit.config`, :mod:`dnnkit.builders`, :mod:`dnnkit.training`,
:mod:`dnnkit.manifest`, :mod:`dnnkit.sources`, :mod:`dnnkit.child`, :mod:`dnnkit.core` (a command imports what it
runs when it runs).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from dnnkit.cli.parser import parser
from dnnkit.errors import DnnkitError

__all__ = ["entry", "main", "parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    from dnnkit.core.faults import UNPUBLISHED, Terminated, crash_line, end_on_sigterm, filesystem_error
    from dnnkit.core.quiet import ThirdPartyLog

    args = parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    capture = ThirdPartyLog(enabled=hasattr(args, "verbose") and not args.verbose)
    end_on_sigterm()
    code, crash = 1, None
    from dnnkit.child import items

    progress = items.PROGRESS  # restored after the command: main() called from Python leaves no printer behind
    with capture:
        try:
            if hasattr(args, "verbose") and not getattr(args, "json", False):  # a line per item, with its time
                items.PROGRESS = items.print_progress
            if getattr(args, "custom_objects", None):
                from dnnkit.sources.keras_file import use_custom_objects

                use_custom_objects(args.custom_objects)
            code = func(args)
        except DnnkitError as exc:
            print(f"dnnkit: error: {exc}", file=capture.terminal, flush=True)
            code = exc.exit_code
        except KeyboardInterrupt:
            print(f"dnnkit: interrupted; {UNPUBLISHED}", file=capture.terminal, flush=True)
            code = 130
        except Terminated:
            print(f"dnnkit: terminated (SIGTERM); {UNPUBLISHED}", file=capture.terminal, flush=True)
            code = 143
        except Exception as exc:  # noqa: BLE001 - last line of defence for a one-line report
            if os.environ.get("DNNKIT_DEBUG"):
                raise
            crash = exc
        finally:
            items.PROGRESS = progress
    out = getattr(args, "out_folder", None)
    if crash is None:
        _keep_log(capture, out if code not in (2, 130, 143) else None)
        return code
    log = _keep_log(capture, None if filesystem_error(crash) is not None else out)
    print(crash_line(crash, log), file=capture.terminal, flush=True)
    return 1


def _keep_log(capture: Any, out: Any) -> Any:
    """The captured third-party log appended to ``OUT/logs/dnnkit.log`` (``None`` where it cannot be)."""
    try:
        return capture.keep_in(out)
    except OSError:
        return None


def entry() -> Any:
    """Console-script entry point. The process ends without Python's teardown, which after a run
    spends over a second freeing TensorFlow's modules (everything dnnkit writes is closed by then)."""
    code = main()
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
