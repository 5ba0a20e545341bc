"""infogap: training and ablations of contrastive vision-language models on information imbalance.

The code lives in the repository's top-level folders and is installed under this one namespace:
``infogap.data`` (``data/``), ``infogap.models`` (``models/``), ``infogap.train`` (``train/``) and
``infogap.ablations`` (``ablations/``); data flows in that order. ``configs/`` and ``slurm/`` ship with
the package as ``infogap/configs`` and ``infogap/slurm``. ``python -m infogap`` is the ``infogap``
command.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("infogap")
except PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"
