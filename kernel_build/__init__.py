"""The build package behind build_kernel.py: kernels/*.py plus imet_utils -> single-file Kaggle kernels.

    kernel      the Kernel type (role, fold, id, title, folder), the plan of a build, the source paths
    settings    the kernels' CONFIG from the config dataclasses: overrides, the generated block, README tables
    inline      imet_utils inlined as readable source
    render      a built kernel in reading order: the script (CONFIG, main(), helpers, package) or the notebook
    metadata    each kernel's metadata, derived and checked
    toplevel    the user's top-level metadata file, pointed at the build and checked
    build       writes every kernel and its metadata
    notebook    nbformat validation and running a notebook as Kaggle's papermill does
    kaggle_cli  the one door to the kaggle CLI: credentials, timeouts, answers classified, transient ones retried
    ledger      .kaggle-ledger/ledger.json: a cache of what Kaggle said (Kaggle is the record), so any stop resumes
    orchestrate push in waves, wait, trust a run only on its run_status.json, through the real kaggle CLI
    leaderboard submit once per version and wait for the score; the probe
    quota       kaggle quota: the weekly GPU hours left, checked before a push
    plan        GPU hours of each kernel (plan), measured figures from pulled runs where there are some
    runs        pulled outputs in runs/<slug>/v<N>/ and the report (pull, report)
    steps       the Kaggle steps build_kernel.py's subcommands run
    local       the local run in a simulated /kaggle: run_kernel, the offline-package blocker
    folds       python -m kernel_build.folds: folds.csv from a train.csv

Nothing here imports TensorFlow or kaggle.
"""

from kernel_build.build import build
from kernel_build.kaggle_cli import check_no_secrets, status
from kernel_build.kernel import BASE_METADATA, METADATA_FILE, SOURCES, Build, BuildError, Kernel, built_kernels
from kernel_build.local import (
    EXECUTE_NOTEBOOK,
    LOCAL_SUBMIT,
    LOCAL_TRAIN,
    SCRATCH_TRAIN,
    blocker_dir,
    kaggle_dir,
    run_kernel,
    run_local,
    runnable,
)
from kernel_build.metadata import check_build, check_metadata, load_base_metadata
from kernel_build.notebook import execute_notebook, validate_notebook
from kernel_build.render import inline_kernel
from kernel_build.settings import config_table, effective_config, parse_overrides, replace_config_tables, set_help
from kernel_build.toplevel import check_top_level, point_top_level

__all__ = [
    "BASE_METADATA",
    "EXECUTE_NOTEBOOK",
    "LOCAL_SUBMIT",
    "LOCAL_TRAIN",
    "SCRATCH_TRAIN",
    "METADATA_FILE",
    "SOURCES",
    "Build",
    "BuildError",
    "Kernel",
    "blocker_dir",
    "build",
    "built_kernels",
    "check_build",
    "check_metadata",
    "check_no_secrets",
    "check_top_level",
    "config_table",
    "effective_config",
    "execute_notebook",
    "inline_kernel",
    "kaggle_dir",
    "load_base_metadata",
    "parse_overrides",
    "point_top_level",
    "replace_config_tables",
    "run_kernel",
    "run_local",
    "runnable",
    "set_help",
    "status",
    "validate_notebook",
]
