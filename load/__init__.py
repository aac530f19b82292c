"""`make load`: a load and chaos run over HTTP against the local stack (docs/capacity.md).

run.py is the sequence, actors.py the clients, invariants.py the checks, report.py the output.
"""
