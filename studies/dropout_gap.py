"""Does dropout (or augmentation) explain the train/test accuracy gap?

Users fine-tuning a ResNet-18 on CIFAR-10 (SGD, momentum 0.9, weight decay 5e-4, MultiStepLR at
epochs 7 and 12, 15 epochs) see test accuracy above train accuracy early on, and a gap that
widens after the first learning-rate decay. Their guess: dropout, active in training and off at
test time, and augmentation, which makes the training images harder. This study varies both and
measures train accuracy twice: as seen during training and in eval mode on unaugmented images.
"""

from ablate import Preset, Study, choice

study = Study(
    name="dropout_gap",
    question="Do dropout and augmentation explain test accuracy above train accuracy, "
    "and the gap after the first learning-rate decay?",
    baseline=dict(
        dataset="cifar10",
        model="resnet18",
        width=64,
        dropout=0.0,
        augment="crop_flip",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        scheduler="multistep",
        milestones=(7, 12),
        gamma=0.1,
        epochs=15,
        batch_size=128,
    ),
    factors=dict(dropout=choice(0.0, 0.25, 0.5), augment=choice("none", "crop_flip")),
    seeds=3,
    metric="test_acc",
    # The question is about the gaps, early on (after the first epoch) and at the end, and
    # whether dropout matters with and without augmentation; and augmentation's own effect.
    metrics=("gap_running_first", "gap_running", "gap_eval"),
    within=("augment",),
    contrasts=[("augment", "none", "crop_flip")],
    design="grid",
    presets=dict(
        full=Preset("the users' scale: all of CIFAR-10, width 64, 15 epochs (GPU advised)"),
        cpu=Preset(
            "6 to 20 minutes on a 2-core CPU (6 where it computes in bf16): the shipped "
            "cifar10-mini (3,000 train images, 1,000 test), width 8, 6 epochs, dropout 0 and 0.5 "
            "with and without crop + flip, 6 seeds, which detect effects of about 5 to 10 points "
            "on the final gaps; the mid preset adds dropout 0.25, 12,000 of CIFAR-10's images, "
            "the full test set (a test set 10 times larger narrows its part of every interval) "
            "and 10 epochs",
            dict(
                dataset="cifar10-mini",
                width=8,
                epochs=6,
                milestones=(3, 5),
                train_size=3000,
                train_eval_size=1000,
            ),
            seeds=6,
            factors=dict(dropout=choice(0.0, 0.5)),
        ),
        mid=Preset(
            "about 90 minutes on a 2-core CPU that computes in bf16 (85 measured, beside other "
            "work; about 4 hours in fp32): 12,000 of CIFAR-10's training "
            "images (--data-dir), the full 10,000-image test set, width 8, 10 epochs with steps at "
            "5 and 8 (the users' 15 epochs with steps at 7 and 12, scaled), 6 seeds; their "
            "optimizer, rates, weight decay and batch size",
            dict(width=8, epochs=10, milestones=(5, 8), train_size=12000, train_eval_size=2000),
            seeds=6,
        ),
        smoke=Preset(
            "a functional check in well under a minute: 256 images, width 4, 1 epoch",
            dict(
                dataset="cifar10-mini",
                width=4,
                epochs=1,
                batch_size=64,
                milestones=(1,),
                train_size=256,
                test_size=200,
                train_eval_size=200,
            ),
        ),
    ),
    default_preset="cpu",
)
