"""Weights to fine-tune from, for studies/pretraining.py: a CIFAR ResNet-18 trained on five of
CIFAR-10's classes (airplane, automobile, bird, cat, deer).

The pretraining study fine-tunes these weights on the other five classes (dog, frog, horse, ship,
truck), pairing each of its trials with the trial of this study that has the same seed. It
lists this file in its presets' ``requires``, so ``ablate run studies/pretraining.py`` runs this
one first when its weights are missing. Run on its own it answers nothing: it has one cell.
"""

from ablate import Preset, Study

study = Study(
    name="pretrain_source",
    question="(the source of pretrained weights for studies/pretraining.py: one cell, no factor)",
    baseline=dict(
        dataset="cifar10",
        classes=(0, 1, 2, 3, 4),
        model="resnet18",
        width=64,
        augment="crop_flip",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        scheduler="cosine",
        epochs=15,
        batch_size=128,
        keep_weights="final",
    ),
    seeds=3,
    presets=dict(
        full=Preset("all 25,000 CIFAR-10 images of classes 0-4, width 64, 15 epochs (GPU advised)"),
        cpu=Preset(
            "about 2 minutes on a 2-core CPU: cifar10-mini's 2,500 images of classes 0-4, width 8, "
            "6 epochs, 6 seeds (one for each seed of the studies that fine-tune from it)",
            dict(dataset="cifar10-mini", width=8, epochs=6, train_eval_size=500),
            seeds=6,
        ),
        mid=Preset(
            "about 15 minutes on a 2-core CPU: all 25,000 CIFAR-10 training images of classes 0-4 "
            "(--data-dir), width 8, 8 epochs, 6 seeds",
            dict(width=8, epochs=8, train_eval_size=2000),
            seeds=6,
        ),
        smoke=Preset(
            "a functional check in seconds",
            dict(
                dataset="cifar10-mini",
                width=4,
                epochs=1,
                train_size=256,
                test_size=200,
                train_eval_size=200,
                batch_size=64,
            ),
        ),
    ),
    default_preset="cpu",
)
