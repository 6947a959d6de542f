"""Training with NNabla: the engine and the run's context (``engine``), the function catalogue (``functions``), solvers
per multiplier (``solvers``), the project as trained and the loader's graphs (``graphs``), what is checked before a run
(``checks``), monitors (``monitors``), checkpoints (``checkpoint``), the files a run writes about itself (``records``),
the run (``train``), data parallelism (``slicing`` plans the cut, ``replicas`` hold the slices' graphs, ``sync_bn``
synchronises Batch Normalization, ``parallel`` runs it), the frozen-prefix cache (``frozen_cache``), evaluation
(``evaluate``), plots (``plots``), a classifier's head found and resized (``heads``) and a trained project pointed at a
new dataset (``retarget``; an ``.sdcproj`` in NNC's own format: ``retarget_sdcproj``), training in phases
(``phases``). May import ``project``,
``data``, ``formats`` and the ground floor."""
