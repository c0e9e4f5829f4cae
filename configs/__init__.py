# Hydra config package: these YAML files ship inside the wheel as segtrain.configs.
