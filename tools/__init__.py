"""Developer tools: the local Firebase stack, the demo, the web app server, load tests.

Run them as modules from the repository root (``.venv/bin/python -m tools.demo``).
"""
