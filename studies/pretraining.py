"""Does pretraining help, and does it explain test accuracy above train accuracy early on?

Users fine-tune torchvision's ImageNet-pretrained ResNet-18 on CIFAR-10 (every layer trained, the
classifier replaced by Dropout(0.5) + Linear; SGD, momentum 0.9, weight decay 5e-4, steps at
epochs 7 and 12, 15 epochs) and see test accuracy above train accuracy early in training. Their
guess: dropout in the head, and augmentation. Pretrained weights are another candidate: a net
that starts from good features classifies the unaugmented test images well before its running
train accuracy, measured with dropout and augmentation on, catches up. This study crosses the
starting point (from scratch or pretrained) with the head's dropout (0 or 0.5) and reports the
final test accuracy and the gap after the first epoch.

- ``full``: the users' setting, ImageNet weights against random initialisation on all of
  CIFAR-10 (the ImageNet weights are downloaded once, as in their script, or read from
  ``$ABLATE_WEIGHTS``).
- ``cpu`` (default) and ``smoke``: entirely offline. A CIFAR ResNet-18 is pretrained on classes
  0-4 (``studies/pretrain_source.py``, run first when its weights are missing) and fine-tuned on
  classes 5-9 from 1,000 images (cpu), each trial from the pretraining run with its own seed;
  the new classifier head is initialised afresh (the class count is the same, the classes not).
"""

from ablate import Preset, Study, choice

study = Study(
    name="pretraining",
    question="Does pretraining help, and does it explain test accuracy above train accuracy "
    "early in training?",
    baseline=dict(
        dataset="cifar10",
        model="torchvision_resnet18",
        init="scratch",
        dropout=0.5,
        augment="crop_flip",
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        scheduler="multistep",
        milestones=(7, 12),
        gamma=0.1,
        epochs=15,
        batch_size=128,
    ),
    factors=dict(init=choice("scratch", "imagenet"), dropout=choice(0.0, 0.5)),
    seeds=3,
    metric="test_acc",
    metrics=("test_acc", "gap_running_first"),
    within=("dropout",),
    design="grid",
    presets=dict(
        full=Preset(
            "the users' setting: torchvision ResNet-18, ImageNet weights or random "
            "initialisation, all of CIFAR-10, 15 epochs (GPU advised; downloads the "
            "ImageNet weights once)"
        ),
        cpu=Preset(
            "about 3 minutes on a 2-core CPU, offline: a CIFAR ResNet-18 (width 8) pretrained on "
            "cifar10-mini's classes 0-4 (studies/pretrain_source.py), fine-tuned on 1,000 images "
            "of classes 5-9 for 6 epochs at lr 0.05",
            dict(
                dataset="cifar10-mini",
                model="resnet18",
                width=8,
                classes=(5, 6, 7, 8, 9),
                train_size=1000,
                train_eval_size=500,
                epochs=6,
                milestones=(3, 5),
                lr=0.05,
            ),
            factors=dict(init=choice("scratch", "pretrain_source")),
            requires=("pretrain_source.py",),
        ),
        mid=Preset(
            "about 12 minutes on a 2-core CPU, offline: a CIFAR ResNet-18 (width 8) pretrained on "
            "all of CIFAR-10's classes 0-4 (studies/pretrain_source.py, mid), fine-tuned on "
            "2,000 images of classes 5-9 and tested on all 5,000 of their test images, 10 epochs, "
            "6 seeds",
            dict(
                model="resnet18",
                width=8,
                classes=(5, 6, 7, 8, 9),
                train_size=2000,
                train_eval_size=2000,
                epochs=10,
                milestones=(5, 8),
                lr=0.05,
            ),
            seeds=6,
            factors=dict(init=choice("scratch", "pretrain_source")),
            requires=("pretrain_source.py",),
        ),
        smoke=Preset(
            "a functional check in well under a minute",
            dict(
                dataset="cifar10-mini",
                model="resnet18",
                width=4,
                classes=(5, 6, 7, 8, 9),
                train_size=128,
                test_size=100,
                train_eval_size=100,
                epochs=2,
                milestones=(1,),
                lr=0.05,
                batch_size=64,
            ),
            factors=dict(init=choice("scratch", "pretrain_source")),
            requires=("pretrain_source.py",),
        ),
    ),
    default_preset="cpu",
)
