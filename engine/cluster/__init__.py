"""Dask clusters shared by ``rdengine batch`` (videos as tasks) and ``rdengine process --workers/--scheduler``
(one video's units as tasks): starting or joining a cluster, the model each worker keeps, and
progress that workers report to the client."""
