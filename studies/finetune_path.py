"""Which of the changes from training a ResNet-18 from scratch to fine-tuning a pretrained one
made the difference?

Users train a ResNet-18 from scratch (SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128,
no augmentation, a constant rate) and others fine-tune a pretrained one (a Dropout(0.5) head,
crop + flip, steps at epochs 7 and 12, a smaller rate). Five things change at once. This study
runs the ablation path between the two recipes, offline: the pretrained weights come from a
CIFAR ResNet-18 trained on classes 0-4 (``studies/pretrain_source.py``, run first when its
weights are missing), fine-tuned on classes 5-9, each trial from the source run with its own
seed, as ``studies/pretraining.py`` does.
"""

from ablate import Preset, Study, path

study = Study(
    name="finetune_path",
    question="Of the gain from training a ResNet-18 from scratch to fine-tuning a pretrained one, "
    "what does each change account for: the pretrained start, the dropout head, crop + flip, "
    "the step schedule, or the smaller rate?",
    baseline=dict(  # from scratch
        dataset="cifar10",
        classes=(5, 6, 7, 8, 9),
        model="resnet18",
        width=64,
        init="scratch",
        dropout=0.0,
        augment="none",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        scheduler="none",
        milestones=(7, 12),
        epochs=15,
        batch_size=128,
        val_size=2500,
        # fp32 on every machine: precision="auto" would train every recipe in the first
        # one's precision, bf16 on a CPU that has it and fp32 elsewhere, so the published steps
        # would hold only on a machine like the one that ran them.
        precision="fp32",
    ),
    design=path(
        target=dict(  # fine-tuning a pretrained net
            init="pretrain_source",
            dropout=0.5,
            augment="crop_flip",
            schedule=dict(scheduler="multistep"),
            rate=dict(lr=0.01),
        ),
        first=3,
        step=1,
    ),
    seeds=6,
    metric="test_acc",
    presets=dict(
        full=Preset(
            "all of CIFAR-10's classes 5-9 (2,500 held out for validation), width 64, 15 epochs, "
            "from pretrain_source's full run (GPU advised)",
            requires=("pretrain_source.py",),
        ),
        mid=Preset(
            "about an hour on a 2-core CPU, offline: 4,000 of CIFAR-10's images of classes 5-9 "
            "(--data-dir; 1,000 more for validation), all 5,000 of their test images, width 8, "
            "10 epochs with steps at 5 and 8, from pretrain_source's mid run",
            dict(width=8, train_size=4000, val_size=1000, train_eval_size=2000, epochs=10, milestones=(5, 8)),
            requires=("pretrain_source.py",),
        ),
        cpu=Preset(
            "about 10 minutes on a 2-core CPU, offline: cifar10-mini's classes 5-9 (1,000 "
            "training images, 250 for validation, 500 test), width 8, 6 epochs with steps at 3 "
            "and 5, from pretrain_source's cpu run",
            dict(
                dataset="cifar10-mini",
                width=8,
                train_size=1000,
                val_size=250,
                train_eval_size=500,
                epochs=6,
                milestones=(3, 5),
            ),
            requires=("pretrain_source.py",),
        ),
        smoke=Preset(
            "a functional check in about a minute: 128 images, width 4, 2 epochs, 2 seeds",
            dict(
                dataset="cifar10-mini",
                width=4,
                train_size=128,
                val_size=64,
                test_size=100,
                train_eval_size=100,
                epochs=2,
                milestones=(1,),
                batch_size=64,
            ),
            seeds=2,
            requires=("pretrain_source.py",),
        ),
    ),
    default_preset="cpu",
)
