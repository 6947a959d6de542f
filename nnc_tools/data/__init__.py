"""Datasets: CIFAR archive readers (``cifar``), generated CIFAR-format archives (``synthetic``), downloads and the cache
folder (``download``, ``cache``), dataset recipes and the NNC-layout writer (``recipes``), and datasets decoded into
arrays for training (``decoded``). May import ``formats`` and the ground floor."""
