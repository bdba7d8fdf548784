"""Can a ResNet-18 reach 50 % test accuracy on CIFAR-10 within 5 epochs?

The users' lab exercise: ResNet-18, batch 128, SGD lr 0.1, momentum 0.9, weight decay 5e-4, no
augmentation, 5 epochs, must pass 50 % test accuracy. This study runs that setup as the users'
script does (fp32) and with ablate's default precision (bf16 autocast where the hardware has it;
channels_last and the on-device data path apply to both), to show whether both reach the bar and
how long each takes. The users normalised to [-1, 1] (mean and std 0.5); ablate normalises with
CIFAR-10's per-channel statistics, which only shifts and scales the inputs.

The ``cpu`` preset trains on all of CIFAR-10: point ``--data-dir`` at a local copy (a folder
with ``train.parquet`` and ``test.parquet``, or torchvision's ``cifar-10-batches-py``).
"""

from ablate import Preset, Study, choice

study = Study(
    name="five_epochs",
    question="Does ResNet-18 reach 50 % test accuracy within 5 epochs with the users' settings, "
    "in fp32 as their script and with ablate's defaults, and how fast?",
    baseline=dict(
        dataset="cifar10",
        model="resnet18",
        width=64,
        augment="none",
        precision="fp32",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        scheduler="none",
        epochs=5,
        batch_size=128,
        eval_batch_size=100,
    ),
    factors=dict(precision=choice("fp32", "auto")),
    seeds=3,
    metric="test_acc",
    metrics=("test_acc", "seconds"),
    target=50.0,
    design="grid",
    presets=dict(
        full=Preset("the users' setting: all of CIFAR-10, width 64, 5 epochs (GPU advised)"),
        cpu=Preset(
            "about 15 minutes on a 2-core CPU: all of CIFAR-10 (--data-dir), width 16, one seed",
            dict(width=16, train_eval_size=2000, eval_batch_size=1000),
            seeds=1,
        ),
        mid=Preset(
            "about 50 minutes on a 2-core CPU: all of CIFAR-10 (--data-dir), width 8, 5 epochs, 6 seeds",
            dict(width=8, train_eval_size=2000, eval_batch_size=1000),
            seeds=6,
        ),
        smoke=Preset(
            "a functional check on the shipped subset in well under a minute",
            dict(
                dataset="cifar10-mini", width=4, epochs=2, train_size=512, test_size=200, train_eval_size=200
            ),
        ),
    ),
    default_preset="cpu",
)
