"""Docker-free ``sam build`` + ``sam local invoke``/``start-api`` for a Python Lambda container image.

* :func:`stage` builds a task root from the function's Dockerfile (same COPYs, same pinned
  requirements for the FROM tag's Python, same compileall, same CMD).
* :class:`Emulator` runs it under the real AWS Lambda Runtime Interface Emulator shipped in the
  aws-sam-cli wheel, with awslambdaric as the runtime client.

Command line: ``python -m local_lambda {lint,stage,invoke,start-api} --help``.
"""

from .emulator import Emulator, EmulatorError, InvokeResult, rie_path
from .interpreters import InterpreterNotFound, find_python
from .stage import StageError, StageResult, stage

__all__ = [
    "Emulator",
    "EmulatorError",
    "InvokeResult",
    "InterpreterNotFound",
    "StageError",
    "StageResult",
    "find_python",
    "rie_path",
    "stage",
]
