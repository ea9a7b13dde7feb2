"""The layout of a run directory: the one place that names its files.

    .lock                while a process uses the run (`tf_gkd.files.locked`)
    config.json          the resolved configuration (`tf_gkd.runs.config`), written
                           once every check has passed, as training starts
    checkpoints/         tf.train.Checkpoint files: networks, optimizers, RNG state
    tb/                  TensorBoard events
    samples/             PNG grids of fixed-z samples (and a VAE's latent pictures)
    pairs.tfrecord       offline distillation: the teacher's (z, image) pairs
    generator.keras      final models, written once training is complete: a GAN's
    discriminator.keras    averaged generator and its discriminator, a VAE's decoder
    decoder.keras          and encoder, a distilled student
    encoder.keras
    student.keras
    vae_eval.json        a VAE's held-out ELBO
    eval.json            gkd-evaluate's scores of the run's generator

Re-running a training binary on the same directory resumes from the latest
checkpoint; the final models are written last and atomically, so their
presence marks a finished run.
"""

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tb"
SAMPLES_DIR = "samples"
PAIRS_FILE = "pairs.tfrecord"
GENERATOR_FILE = "generator.keras"
DISCRIMINATOR_FILE = "discriminator.keras"
DECODER_FILE = "decoder.keras"
ENCODER_FILE = "encoder.keras"
STUDENT_FILE = "student.keras"
# The generator of a run directory, by the kind of run that wrote it (GAN, VAE, distillation).
GENERATOR_FILES = (GENERATOR_FILE, DECODER_FILE, STUDENT_FILE)
VAE_EVAL_FILE = "vae_eval.json"
MANIFOLD_FILE = "latent_manifold.png"  # In samples/.
SCATTER_FILE = "latent_scatter.png"  # In samples/.
EVAL_FILE = "eval.json"
