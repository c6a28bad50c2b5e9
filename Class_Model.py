"""The model, as the numbered scripts use it (the thesis layout's model module).

The thesis network is torchvision's EfficientNet-B0 with a 1-channel stem and a 4-way classifier;
the new-patient profile fuses it (or the small CNN, model.arch) with per-beat features and may
take the beat's running template as a second image channel. The definitions live in
ecg/model.py; this module is the one door the scripts open to them:

    build_model(num_classes, arch, rr_features, in_channels, image_input) -> nn.Module
    save(path, state_dict, classes, ...) / load(path) -> (model, metadata)   weights-only files
    rr_feature_names(cfg)        the per-beat features a model of this config takes
    rr_statistics(features)      their training-split mean and standard deviation
    standardise_rr(model, rr)    store those statistics in the model (it standardises its raw input)
    example_inputs(metadata)     zero inputs of the right shapes (tracing, pruning, export)
    layer_shapes(model)          a pruned model's layer shapes, to rebuild it without pickles
"""
from ecg.model import (ARCHS, RRFusionNet, SmallCNN, build_model, example_inputs, layer_shapes, load,  # noqa: F401
                       load_file, rr_feature_names, rr_statistics, save, standardise_rr)
