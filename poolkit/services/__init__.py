"""What several commands share, below them and above the runtimes.

`artifacts` opens a model's exported files (hashes checked) and rebuilds its eager module;
`comparator` compares outputs (the one place a tolerance is applied); `cifar10` reads the real
images; `environment` describes the machine a result came from.
"""
