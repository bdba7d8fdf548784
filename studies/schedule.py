"""Which learning-rate schedule?

Users training the CIFAR ResNet-18 from scratch for 100 epochs with SGD (lr 0.1, momentum 0.9)
tried a step schedule (MultiStepLR at epochs 30, 60 and 90, gamma 0.1: train 99.4 %, validation
90.4 %) and ReduceLROnPlateau on the validation accuracy (factor 0.5, patience 10); others use
cosine annealing. This study runs the four side by side, with a constant rate as the reference,
on the same seeds, and reports the final accuracy, the train/test gap and how much the test
accuracy still swings at the end. The plateau schedule steps on validation accuracy, as theirs
did: a validation split is held out of the training images for every schedule (the same images
for all), so no schedule ever sees the test set.
"""

from ablate import Preset, Study, choice

study = Study(
    name="schedule",
    question="Which learning-rate schedule gives the best final test accuracy for the same "
    "number of epochs: steps, plateau, cosine or none?",
    baseline=dict(
        dataset="cifar10",
        model="resnet18",
        width=64,
        augment="crop_flip",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-5,
        scheduler="multistep",
        milestones=(30, 60, 90),
        gamma=0.1,
        factor=0.5,
        patience=10,
        epochs=100,
        batch_size=128,
        val_size=5000,  # CIFAR-10's usual 45,000 / 5,000 split: plateau steps on it
    ),
    factors=dict(scheduler=choice("multistep", "plateau", "cosine", "none")),
    seeds=3,
    metric="test_acc",
    # "Which schedule?" ranks them: every pair, not only each against the step schedule.
    contrasts=[
        ("scheduler", "plateau", "cosine"),
        ("scheduler", "cosine", "none"),
        ("scheduler", "plateau", "none"),
    ],
    design="grid",
    presets=dict(
        full=Preset(
            "the users' scale: all of CIFAR-10, width 64, 100 epochs, steps at 30/60/90, "
            "plateau patience 10 (GPU advised)"
        ),
        cpu=Preset(
            "about 4 minutes on a 2-core CPU: cifar10-mini (3,000 train images, 500 more held out "
            "for validation), width 8, 8 epochs, steps at 4 and 6, plateau patience 0 (their 10 of 100 "
            "epochs, scaled)",
            dict(
                dataset="cifar10-mini",
                width=8,
                epochs=8,
                milestones=(4, 6),
                patience=0,
                val_size=500,
                train_size=3000,
                train_eval_size=1000,
            ),
        ),
        mid=Preset(
            "about an hour on a 2-core CPU: 8,000 of CIFAR-10's training images "
            "(--data-dir; 2,000 more held out for validation), the full test set, width 8, 20 "
            "epochs: steps at 6, 12 and 18, plateau patience 2 (the users' 30/60/90 and 10 of 100 "
            "epochs, scaled), 6 seeds",
            dict(
                width=8,
                epochs=20,
                milestones=(6, 12, 18),
                patience=2,
                val_size=2000,
                train_size=8000,
                train_eval_size=2000,
            ),
            seeds=6,
        ),
        smoke=Preset(
            "a functional check in well under a minute",
            dict(
                dataset="cifar10-mini",
                width=4,
                epochs=2,
                milestones=(1,),
                patience=0,
                batch_size=64,
                val_size=200,
                train_size=256,
                test_size=200,
                train_eval_size=200,
            ),
        ),
    ),
    default_preset="cpu",
)
