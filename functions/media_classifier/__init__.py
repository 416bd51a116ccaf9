"""Classify uploaded images and videos with an ONNX model and report to Firestore.

The package holds all logic; ``functions/main.py`` only declares triggers. Heavy
imports (numpy, onnxruntime, Pillow, firebase-admin) happen inside the modules
that need them, so importing this package stays cheap for deploy discovery.
"""

__version__ = "0.1.0"
