"""The reference experiment in one command: its settings (``config``), its datasets as the stages read them
(``datasets``), its stages (``transfer``), the numbers read back from the stages' files (``results``) and its report
(``report``). May import every layer below it (``training``, ``project``, ``data``, ``formats``, the ground floor)."""
