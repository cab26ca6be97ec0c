"""A run's work, stage by stage: which stories a run takes and how they are cut into batches
(`planning`), the extract stage of a batch (`extract`), and the batch files between tasks (`staging`).
The DAG's tasks call these. Imports every stage package before it (`hn`, `crawl`, `parse`, `store`)."""
