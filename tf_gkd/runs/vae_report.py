"""What a VAE run shows besides prior samples: reconstructions, held-out ELBO, 2-D latent pictures.

At the end of a run, `write_report` evaluates the held-out negative ELBO into
`vae_eval.json` and TensorBoard; with a 2-D latent it also draws the classic
pictures of Kingma & Welling (2014): the decoded latent manifold and the test
set's encodings coloured by label, as `samples/latent_*.png` and TensorBoard images.
"""

import os
from statistics import NormalDist

import numpy as np
import tensorflow as tf
from absl import logging

from tf_gkd import contract, files, rundir
from tf_gkd import images as image_utils


def reconstruction_pairs(model, images, labels=None):
    """Tiles [N, H, 2W, C]: each of `images` beside its reconstruction (`labels`: theirs, for a conditional VAE)."""
    return np.concatenate([np.asarray(images), np.asarray(model.reconstruct(images, labels))], axis=2)


def latent_manifold(decoder, size=15, quantile_range=(0.05, 0.95)):
    """Images [size², 28, 28, 1] decoded on a size × size grid over a 2-D latent.

    The grid is spaced by quantiles of N(0, 1), not evenly in z, so that every
    tile covers the same prior mass. Row-major, z₁ increasing left to right and
    z₂ decreasing top to bottom, as on the scatter plot.
    """
    z_dim = contract.z_dim(decoder)
    if z_dim != 2:
        raise ValueError(f"The latent manifold needs a 2-D latent. Received: a decoder with z_dim={z_dim}.")
    values = [NormalDist().inv_cdf(q) for q in np.linspace(*quantile_range, size)]
    z = np.array([[z1, z2] for z2 in reversed(values) for z1 in values], np.float32)
    return np.asarray(decoder(z, training=False))


def write_report(model, workdir, test_images, test_labels, description, label_names=None, manifold_size=15):
    """Evaluates `model` on the held-out images; writes vae_eval.json, TensorBoard and 2-D pictures.

    Args:
      model: a trained `tf_gkd.models.vae.VAE`.
      workdir: the run directory.
      test_images: float images [N, 28, 28, 1] in [-1, 1], held out from training.
      test_labels: their integer labels [N] (colours of the latent scatter plot).
      description: what the held-out images are (written into the JSON).
      label_names: optional class names for the scatter plot's legend.
      manifold_size: tiles per side of the latent manifold.

    Returns:
      The dict written to vae_eval.json.
    """
    step = int(model.step.numpy())
    labels = test_labels if model.num_classes else None
    result = model.evaluate_elbo(test_images, labels)
    result.update(
        step=step,
        held_out=description,
        likelihood=model.likelihood,
        beta=model.beta,
        units="nats per image (summed over pixels and latent dimensions, averaged over images)",
    )
    path = os.path.join(workdir, rundir.VAE_EVAL_FILE)
    files.write_json(result, path)
    logging.info(
        "Held-out negative ELBO %.2f nats per image (reconstruction %.2f, KL %.2f); wrote %s",
        result["negative_elbo"],
        result["reconstruction"],
        result["kl"],
        path,
    )

    writer = tf.summary.create_file_writer(os.path.join(workdir, rundir.TENSORBOARD_DIR))
    with writer.as_default(step=step):
        for key in ("negative_elbo", "reconstruction", "kl"):
            tf.summary.scalar(f"test/{key}", result[key])
        # A conditional VAE's latent means something else in each class: no one picture of it.
        if model.z_dim == 2 and not model.num_classes:
            samples_dir = os.path.join(workdir, rundir.SAMPLES_DIR)
            manifold = latent_manifold(model.decoder, manifold_size)
            image_utils.save_grid_png(
                manifold,
                os.path.join(samples_dir, rundir.MANIFOLD_FILE),
                title=f"latent manifold, step {step}",
                cols=manifold_size,
            )
            tf.summary.image("latent_manifold", image_utils.make_grid(manifold, cols=manifold_size)[None])
            scatter = image_utils.scatter_plot(
                model.encode(test_images),
                test_labels,
                os.path.join(samples_dir, rundir.SCATTER_FILE),
                title=f"{description}: posterior means, step {step}",
                label_names=label_names,
            )
            tf.summary.image("latent_scatter", scatter[None])
            logging.info("Wrote %s and %s in %s", rundir.MANIFOLD_FILE, rundir.SCATTER_FILE, samples_dir)
    writer.close()
    return result
