"""From the tutorial CNN to a ResNet (and a C3 variant): how much does the architecture buy,
and what does augmentation do to the gap?

Users start from the PyTorch tutorial CNN on CIFAR-10 (test about 53 %, loss stuck near 1.1),
move to a ResNet-9 (SGD lr 5e-3, momentum 0.9, cosine annealing, batch 64, 24 epochs: train
99 %, test 82 %, overfitting) and add pad-4 random crop + horizontal flip (train 91 %, test
88 %). This study crosses the architecture (tutorial CNN, ResNet-9, ResNet-18) with
augmentation (none, crop + flip) on the users' recipe, so that each number gets a confidence
interval and the train/test gap is measured both ways (running and in eval mode).

The users also asked whether the residual block can be replaced by YOLOv5's C3 block (a CSP
block: two 1x1 branches, residual bottlenecks on one, concatenated and fused by a 1x1):
``resnet_c3`` is the ResNet-18 layout with a C3 block per stage, about a third of its
parameters. The report's cell table shows each model's parameter count and seconds per epoch.
"""

from ablate import Preset, Study, choice

study = Study(
    name="architecture",
    question="How much do ResNet-9, ResNet-18 and its C3 variant gain over the tutorial CNN, "
    "and how much of the train/test gap does crop + flip close for each?",
    baseline=dict(
        dataset="cifar10",
        model="simple_cnn",
        width=64,
        augment="none",
        optimizer="sgd",
        lr=5e-3,
        momentum=0.9,
        weight_decay=0.0,
        scheduler="cosine",
        epochs=24,
        batch_size=64,
    ),
    factors=dict(
        model=choice("simple_cnn", "resnet9", "resnet18", "resnet_c3"), augment=choice("none", "crop_flip")
    ),
    seeds=3,
    metric="test_acc",
    # The question names both factors: how much each model gains over the CNN (with and without
    # crop + flip), and how much of the gap crop + flip closes for each model.
    metrics=("test_acc", "gap_eval"),
    within=("model", "augment"),
    # Their other question, asked directly: does the C3 block beat the ResNet-18 it replaces?
    contrasts=[("model", "resnet_c3", "resnet18")],
    design="grid",
    presets=dict(
        full=Preset(
            "the users' recipe: all of CIFAR-10, width 64, SGD 5e-3 / 0.9, cosine, "
            "batch 64, 24 epochs (GPU advised)"
        ),
        cpu=Preset(
            "about 3 minutes on a 2-core CPU: cifar10-mini (3,000 train images), width 8, "
            "6 epochs at lr 0.05 (the users' 5e-3 barely moves in so few steps)",
            dict(dataset="cifar10-mini", width=8, epochs=6, lr=0.05, train_size=3000, train_eval_size=1000),
        ),
        mid=Preset(
            "about an hour on a 2-core CPU with native bf16 (its 48 trials took 63 minutes on an "
            "Intel Xeon), two to three hours in fp32: 10,000 of CIFAR-10's training images "
            "(--data-dir), the full test set, width 8, "
            "12 epochs at lr 0.05 with cosine annealing, batch 64, 6 seeds",
            dict(width=8, epochs=12, lr=0.05, train_size=10000, train_eval_size=2000),
            seeds=6,
        ),
        smoke=Preset(
            "a functional check in well under a minute",
            dict(
                dataset="cifar10-mini",
                width=4,
                epochs=1,
                lr=0.05,
                train_size=256,
                test_size=200,
                train_eval_size=200,
            ),
        ),
    ),
    default_preset="cpu",
)
