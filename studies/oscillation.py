"""Why does test accuracy swing from epoch to epoch on a small dataset?

Users train a ResNet-50 from scratch on 565 photos of their own (4 classes, resized to 224,
random horizontal flip, a random 80/20 split: 452 train, 113 test) with Adam at 1e-4 and batch
8, later 16, for 10-20 epochs. Test accuracy jumps between 43 % and 92 % from one epoch to the
next; a larger batch did not cure it. Candidates: the batch size (BatchNorm's batch statistics,
and its running averages that evaluation uses, are noisy at 8 images), a learning rate that
never decays, and the test set itself (113 images: one image is 0.9 points). This study crosses
the batch size with a constant or cosine-decayed rate and reports, besides the final accuracy,
each cell's swing: the mean change of test accuracy between consecutive epochs over the second
half of training.

The ``full`` preset is the users' setting and needs their folder:
``ablate run studies/oscillation.py --preset full --data-dir PATH`` (one subfolder per class).
"""

from ablate import Preset, Study, choice

study = Study(
    name="oscillation",
    question="Does test accuracy swing between epochs because of the batch size or because "
    "the learning rate never decays?",
    baseline=dict(
        dataset="imagefolder",
        model="resnet50",
        augment="crop_flip",
        padding=0,  # horizontal flip only, as the users'
        optimizer="adam",
        lr=1e-4,
        weight_decay=0.0,
        scheduler="none",
        epochs=15,
        batch_size=8,
    ),
    factors=dict(batch_size=choice(8, 16, 64), scheduler=choice("none", "cosine")),
    seeds=3,
    metric="test_acc",
    # The question is the swing, and it names two causes: does the batch size matter with and
    # without a decaying rate, and does the decay matter at each batch size?
    metrics=("swing_test",),
    within=("batch_size", "scheduler"),
    # Where the schedule's effect is the same at every batch size, its average over them is
    # the most precise answer; and the users' own remedy, a larger batch, on average.
    contrasts=[("scheduler", "cosine", "none", "averaged"), ("batch_size", 64, 8, "averaged")],
    design="grid",
    presets=dict(
        full=Preset(
            "the users' setting: your photo folder (--data-dir) at 224 px, 20 % of each "
            "class held out, ResNet-50 from scratch, Adam 1e-4, 15 epochs (GPU advised)",
            dict(size=224, test_fraction=0.2),
        ),
        cpu=Preset(
            "about 2 minutes on a 2-core CPU: the users' split sizes (452 train, 113 test) drawn "
            "from cifar10-mini, CIFAR ResNet-18 at width 8, Adam 1e-3, 8 epochs",
            dict(
                dataset="cifar10-mini",
                model="resnet18",
                width=8,
                lr=1e-3,
                epochs=8,
                train_size=452,
                test_size=113,
                train_eval_size=452,
            ),
        ),
        mid=Preset(
            "20 minutes (bf16) to about 70 (fp32) on a 2-core CPU: the users' 452 training "
            "images (from CIFAR-10, "
            "--data-dir) but the full 10,000-image test set, so a swing left is the training's, "
            "not the test sample's; CIFAR ResNet-18 width 8, Adam 1e-3, 15 epochs, 6 seeds",
            dict(dataset="cifar10", model="resnet18", width=8, lr=1e-3, train_size=452, train_eval_size=452),
            seeds=6,
        ),
        smoke=Preset(
            "a functional check in well under a minute",
            dict(
                dataset="cifar10-mini",
                model="resnet18",
                width=4,
                lr=1e-3,
                epochs=2,
                train_size=128,
                test_size=64,
                train_eval_size=64,
            ),
        ),
    ),
    default_preset="cpu",
)
