"""Generated iMet-format competitions, for local runs, tests and benchmarks; no kernel inlines this package.

Each writes labels.csv, train.csv, sample_submission.csv, train/<id>.png and test/<id>.png, plus solution.csv
(the test labels, which no kernel reads) so a local run can score its submission. Images vary in size and
aspect, and their content is learnable from their labels.

    generate     generate_competition(out, mode=...): the one entry point
    toy          the toy mode: a background colour per culture and a shape per tag, fast, for tests
    realistic    the realistic mode: cluttered textured scenes, a long tail fitted to iMet 2019, co-occurring
                 labels and noisy train labels (what ``build_kernel.py --run-local`` generates by default,
                 ``kernel_build.local.LOCAL_DATA``)
    objects      the objects mode: photographed objects (``sources``) pasted on textures, a global filter as the
                 culture, a long tail, small objects missed in train (for transfer learning)
    gallery      the gallery mode: museum photographs of framed works (crops of ``sources``' photographs), a frame
                 and rendering per culture, tags shared by near-duplicate works, Zipf, JPEG artefacts
    sources      real photographs that installed packages ship (scikit-image, scikit-learn, matplotlib), cut
                 into object patches, textures and distractors; nothing is downloaded
    competition  what all modes do the same way: folders, ids, image sizes, Zipf label weights, labels.csv and
                 sample_submission.csv
    draw         pixels: colours, shapes, PNG files (every mode and bench/scale.py draw through it)
    cli          ``python -m synth OUT [--n-train N] [--n-test N] [--groups culture:6,tag:14]
                 [--mode toy|realistic|objects|gallery] [--seed S]``
"""

from synth.competition import IMET_2019_GROUPS, IMET_2020_GROUPS
from synth.gallery import GALLERY_GROUPS
from synth.generate import MODES, generate_competition
from synth.objects import OBJECTS_GROUPS
from synth.realistic import REALISTIC_GROUPS

__all__ = [
    "GALLERY_GROUPS",
    "IMET_2019_GROUPS",
    "IMET_2020_GROUPS",
    "MODES",
    "OBJECTS_GROUPS",
    "REALISTIC_GROUPS",
    "generate_competition",
]
