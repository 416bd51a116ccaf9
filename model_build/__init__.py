"""Offline model build step: transfer learning -> ONNX (project model contract) -> int8.

Run as ``python -m model_build <command>``; see ``python -m model_build --help``.
Everything here runs offline: weights and data come from locally installed packages or files.
"""

__version__ = "1.0.0"
