"""``rdengine serve``: a local web page over the Python API to submit, queue, watch and look at runs.

``security`` (bind, log-in, paths, uploads), ``jobs`` (the job folders and the one-at-a-time
queue), ``worker`` (one job's process: ``RollingDepth`` on the job's input), ``watch`` (progress
from a job's log), ``look`` (what a finished job shows) and ``app`` (the Gradio page).
"""
