"""Which of the changes from the tutorial CNN recipe to the ResNet-9 recipe made the difference?

Users start from the PyTorch CIFAR-10 tutorial (its small CNN, SGD lr 1e-3 with momentum 0.9,
batch 4, no augmentation: 53-57 % test accuracy) and move to a ResNet-9 recipe (crop + flip,
cosine annealing, the rate a range test picked, 5e-3, with weight decay 0.032, batch 64: 82 %
without the augmentation, 88 % with it). They changed five things at once. This study runs the
ablation path between the two recipes: each round flips the one remaining change that gains the
most (chosen on a validation split), so every step's gain has its interval, where the path took
it. Both recipes train for the same number of epochs (the tutorial's 2 would leave the ResNet
untrained; the ResNet recipe's 24 are scaled to the preset), so the path measures the five
changes, not training longer.
"""

from ablate import Preset, Study, path

study = Study(
    name="recipe_path",
    question="Of the gain from the tutorial CNN recipe to the ResNet-9 recipe, what does each "
    "change account for: the model, crop + flip, cosine annealing, the range test's rate with "
    "its weight decay, or the larger batch?",
    baseline=dict(  # the tutorial's recipe
        dataset="cifar10",
        model="simple_cnn",
        width=64,  # the ResNet-9's, once the model step flips it
        augment="none",
        optimizer="sgd",
        lr=1e-3,
        momentum=0.9,
        weight_decay=0.0,
        scheduler="none",
        batch_size=4,
        epochs=24,
        val_size=5000,
        # fp32 on every machine: precision="auto" would train every recipe in the first
        # one's precision, bf16 on a CPU that has it and fp32 elsewhere, so the published steps
        # would hold only on a machine like the one that ran them.
        precision="fp32",
    ),
    design=path(
        target=dict(  # the ResNet-9 recipe: five changes
            model="resnet9",
            augment="crop_flip",
            schedule=dict(scheduler="cosine"),
            rate=dict(lr=5e-3, weight_decay=0.032),
            batch=dict(batch_size=64),
        ),
        first=3,
        step=1,
    ),
    seeds=6,
    metric="test_acc",
    presets=dict(
        full=Preset(
            "the users' scale: all of CIFAR-10 (5,000 held out for validation), width 64, 24 "
            "epochs (GPU advised)"
        ),
        mid=Preset(
            "about two hours on a 2-core CPU: 12,000 of CIFAR-10's training images "
            "(--data-dir; 2,000 more held out for validation), the full test set, ResNet-9 "
            "width 16, 6 epochs, 6 seeds; racing starts each candidate on 3",
            dict(width=16, epochs=6, train_size=12000, val_size=2000, train_eval_size=2000),
        ),
        cpu=Preset(
            "about 7 minutes on a 2-core CPU (the race trained 74 of its 96 trials): the shipped "
            "cifar10-mini (2,000 training images of it, 500 more for validation, 1,000 test), "
            "ResNet-9 width 8, 3 epochs, 6 seeds; "
            "the mid preset trains on 6 times as many images for twice as long",
            dict(
                dataset="cifar10-mini",
                width=8,
                epochs=3,
                train_size=2000,
                val_size=500,
                train_eval_size=500,
            ),
        ),
        smoke=Preset(
            "a functional check in about a minute: 256 images, width 4, 1 epoch, 2 seeds",
            dict(
                dataset="cifar10-mini",
                width=4,
                epochs=1,
                train_size=256,
                val_size=64,
                test_size=200,
                train_eval_size=200,
            ),
            seeds=2,
        ),
    ),
    default_preset="cpu",
)
