"""First look at the token generators: class agreement and FID of 256 baseline samples, tokenizer reconstruction FID.

A quick check after `adagen zoo train maskgit var`, before the full `adagen zoo eval` covers them:

    python benchmarks/token_first_look.py

Prints one line per generator and writes /tmp/<name>_samples.png.
"""
import torch
from torchvision.utils import save_image
from adagen_env import zoo
from adagen_env.samplers import make_generator
from adagen_env.samplers.maskgit import MaskGITSampler
from adagen_env.samplers.var import VARSampler
from adagen_env.metrics import class_agreement
from adagen_env.data import ShapesDataset
c = zoo.load("shapes-classifier")
lab = torch.arange(8).repeat(32)
for name, make in (("maskgit", lambda m: MaskGITSampler(m, num_steps=8)), ("var", lambda m: VARSampler(m))):
    if not zoo.weights_path(name).exists():
        print(name, "no weights"); continue
    m = zoo.load(name)
    x = make(m).sample(lab, make_generator(0))
    acc = (c(x)[1].argmax(1) == lab).float().mean().item()
    from adagen_env.metrics import compute_metrics
    real, rl = ShapesDataset(32).sample(1000, seed=3)
    with torch.no_grad():
        rec = torch.cat([m.tokenizer.decode(m.tokenizer.encode(chunk)) for chunk in real.split(250)]).clamp(0, 1)
    r = compute_metrics(rec, rl, metrics=("fid",))
    g = compute_metrics(x, lab, metrics=("fid",))
    print(name, "class agreement", round(acc, 3), "recon FID@1000", r, "gen FID@256", g, flush=True)
    save_image(torch.cat([x[::4][:64]]), f"/tmp/{name}_samples.png", nrow=8)
