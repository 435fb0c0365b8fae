"""Notebooks as Kaggle takes them: valid nbformat 4.5, run the way papermill runs them (nbclient, an IPython kernel)."""

from __future__ import annotations

import json
import re
import sys
import tempfile
import warnings
from pathlib import Path

from kernel_build.kernel import BuildError

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def validate_notebook(nb: dict, where: str) -> None:
    """Fails unless ``nb`` is valid nbformat 4.5 (cell ids included): Kaggle runs notebooks through papermill."""
    try:
        import nbformat
        from nbformat import ValidationError
    except ImportError:  # building needs no Jupyter; the tests and a notebook --run-local do have nbformat
        return
    try:
        with warnings.catch_warnings():
            # nbformat only warns of a missing or duplicate cell id (and "repairs" it); papermill needs them
            warnings.simplefilter("error")
            nbformat.validate(nbformat.from_dict(nb))
    except (ValidationError, Warning) as e:
        raise BuildError(
            f"{where}: not a valid nbformat {nb.get('nbformat')}.{nb.get('nbformat_minor')} "
            f"notebook: {getattr(e, 'message', e)}"
        ) from None


def executed_notebook_path(path: Path) -> Path:
    """Where ``execute_notebook`` saves the executed copy, outputs included: beside the notebook."""
    return Path(path).with_name(Path(path).stem + ".executed.ipynb")


def _describe_cell(nb: dict, index: int) -> str:
    cells = nb["cells"]
    heading = next(
        (
            ANSI_ESCAPE.sub("", "".join(c["source"])).strip().splitlines()[0]
            for c in reversed(cells[:index])
            if c["cell_type"] == "markdown" and "".join(c["source"]).strip()
        ),
        None,
    )
    count = cells[index].get("execution_count")
    return f"cell {index + 1} of {len(cells)} (id {cells[index].get('id')!r}, In [{count if count else ' '}]" + (
        f", under {heading!r})" if heading else ")"
    )


def _error_text(error: dict) -> tuple[str, str]:
    """(one line "Name: value", the traceback as plain text) of an error output or an error execute reply."""
    line = f"{error.get('ename')}: {error.get('evalue')}"
    return line, ANSI_ESCAPE.sub("", "\n".join(error.get("traceback") or [line]))


def notebook_failure(path: Path) -> str | None:
    """The failed cell of ``path``'s executed copy, named, with its exception; None if there is none."""
    try:
        nb = json.loads(executed_notebook_path(path).read_text())
    except (OSError, ValueError):
        return None
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if out.get("output_type") == "error":
                return (
                    f"{Path(path).name} failed in {_describe_cell(nb, i)}: {_error_text(out)[0]} "
                    f"(traceback above; executed notebook: {executed_notebook_path(path)})"
                )
    return None


def execute_notebook(
    path: Path, output: Path | None = None, *, cwd: Path | None = None, startup_timeout: int = 300
) -> Path:
    """Runs a notebook as Kaggle does: papermill's way, nbclient driving an IPython kernel in its own process.

    The kernel runs this Python (sys.executable), whatever kernelspecs are installed, with this process's
    environment, in ``cwd`` (default: the current folder), with no time limit per cell. What the cells print
    is echoed as it comes, and the executed notebook is saved after every cell, so it can be opened even
    after a failure.

    Args:
        path: the notebook.
        output: where the executed copy goes (default: ``executed_notebook_path(path)``, beside it).
        cwd: the kernel's working folder.
        startup_timeout: seconds to wait for the kernel to start.

    Returns:
        The executed copy's path.

    Raises:
        BuildError: naming the cell that failed and its exception; the cell's traceback is printed first.
    """
    import nbformat
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    path = Path(path)
    output = Path(output) if output else executed_notebook_path(path)
    nb = nbformat.read(path, as_version=4)
    failed: dict[str, object] = {}

    def save(**_):
        nbformat.write(nb, output)

    def on_error(cell_index, execute_reply, **_):
        failed.update(index=cell_index, error=execute_reply["content"])

    with tempfile.TemporaryDirectory(prefix="imet-kernelspec-") as specs:
        _write_kernelspec(Path(specs))
        client = _notebook_client(
            nb, specs=specs, cwd=cwd, startup_timeout=startup_timeout, on_cell_executed=save, on_cell_error=on_error
        )
        try:
            client.execute(cleanup_kc=True)  # shut the kernel down at the end, though we made its manager
        except CellExecutionError:
            raise _cell_failure(nb, failed, path=path, output=output) from None
        except DeadKernelError as e:
            raise BuildError(f"{path.name}: the Jupyter kernel died ({e}); executed notebook: {output}") from None
        finally:
            save()
    return output


def _write_kernelspec(specs: Path) -> None:
    """A kernelspec of our own: an installed "python3" spec may start another interpreter than this one."""
    (specs / "python3").mkdir()
    (specs / "python3" / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3",
                "language": "python",
                "metadata": {"supported_encryption": ["curve"]},
                "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
            }
        )
    )


def _notebook_client(nb, *, specs: str, cwd: Path | None, startup_timeout: int, on_cell_executed, on_cell_error):
    """nbclient's client for ``nb`` on the kernelspec in ``specs``, echoing what the cells print as it comes."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    class EchoingClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):  # noqa: D102 (nbclient's hook)
            if msg["msg_type"] == "stream":
                stream = sys.stderr if msg["content"].get("name") == "stderr" else sys.stdout
                stream.write(msg["content"].get("text", ""))
                stream.flush()
            return super().output(outs, msg, display_id, cell_index)

    specs_manager = KernelSpecManager(kernel_dirs=[specs], ensure_native_kernel=False)
    km = AsyncKernelManager(
        kernel_name="python3", kernel_spec_manager=specs_manager, transport_encryption="auto"
    )  # ipykernel warns of a plain TCP kernel
    return EchoingClient(
        nb,
        km=km,
        kernel_name="python3",
        timeout=None,
        startup_timeout=startup_timeout,
        resources={"metadata": {"path": str(Path(cwd or Path.cwd()).resolve())}},
        on_cell_executed=on_cell_executed,
        on_cell_error=on_cell_error,
    )


def _cell_failure(nb, failed: dict, *, path: Path, output: Path) -> BuildError:
    """Prints the failed cell's traceback; returns the error naming the cell and its exception."""
    line, traceback = _error_text(failed.get("error") or {})
    print(traceback, file=sys.stderr, flush=True)
    return BuildError(
        f"{path.name} failed in {_describe_cell(nb, int(failed.get('index', 0)))}: {line} (executed notebook: {output})"
    )
