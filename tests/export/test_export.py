"""Export of a QAT model: integer weights + scales + neuron parameters, reloaded bit-exactly; NIR round trip."""
import json

import nir
import pytest
import torch
from safetensors.torch import load_file

from lightning_snn.callbacks import QuantizationAwareTraining
from lightning_snn.cli import main
from lightning_snn.export import export_quantized, from_nir, load_quantized, to_nir
from lightning_snn.methods import BPTT
from lightning_snn.neurons import reset_states


def qat_model(bits=4, per_channel=False, backbone="mnistnet", **kw):
    torch.manual_seed(0)
    kw.setdefault("backbone_kwargs", {"channels": [4, 8], "hidden": 16})
    m = BPTT(backbone=backbone, num_classes=10, input_shape=(1, 8, 8), T=3,
             neuron={"type": "lif", "decay": 0.25, "v_threshold": 0.2}, **kw)
    QuantizationAwareTraining(bits=bits, per_channel=per_channel).apply(m)
    with torch.no_grad():  # make the float weights differ from their quantized values
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


@pytest.mark.parametrize("bits,per_channel", [(8, False), (4, True), (2, False)])
def test_export_reproduces_fake_quantized_outputs_exactly(tmp_path, bits, per_channel):
    model = qat_model(bits, per_channel)
    x = torch.randn(16, 1, 8, 8) * 2
    with torch.no_grad():
        expected = model(x)
    st, js = export_quantized(model, tmp_path / "m")
    tensors = load_file(str(st))
    meta = json.loads(js.read_text())
    codes = [v for k, v in tensors.items() if k.endswith(".weight.int")]
    assert len(codes) == 4 and all(c.dtype == torch.int8 and c.abs().max() <= 2 ** (bits - 1) - 1 for c in codes)
    assert meta["quantization"]["bits"] == bits
    assert meta["neurons"][0] == {"name": "backbone.body.1", "type": "LIFNode", "v_threshold": pytest.approx(0.2),
                                  "decay": 0.25, "input_scale": 1.0, "v_reset": 0.0, "detach_reset": False}
    reloaded = load_quantized(tmp_path / "m")
    with torch.no_grad():
        got = reloaded(x)
    assert torch.equal(got, expected)
    assert expected.abs().sum() > 0


def test_export_with_batchnorm_backbone(tmp_path):
    model = qat_model(8, backbone="resnet19", backbone_kwargs={})
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    export_quantized(model, tmp_path / "r19")
    with torch.no_grad():
        assert torch.equal(load_quantized(tmp_path / "r19")(x), expected)


def test_export_errors(tmp_path):
    plain = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="no fake-quantized layers"):
        export_quantized(plain, tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="x.safetensors does not exist"):
        load_quantized(tmp_path / "x")


def test_nir_round_trip_of_quantized_model(tmp_path):
    model = qat_model(4)
    graph = to_nir(model.backbone, (1, 8, 8))
    assert isinstance(graph.nodes["1"], nir.LIF)
    nir.write(tmp_path / "m.nir", graph)
    rebuilt = from_nir(nir.read(tmp_path / "m.nir")).eval()
    frames = model.encode(torch.randn(8, 1, 8, 8) * 2)
    with torch.no_grad():
        reset_states(model)
        expected = model.backbone(frames)
        got = rebuilt(frames)
    assert torch.equal(got, expected)


def test_nir_rejects_residual_backbones():
    with pytest.raises(NotImplementedError, match="no NIR equivalent"):
        to_nir(qat_model(8, backbone="resnet19", backbone_kwargs={}).backbone, (1, 8, 8))


def test_export_command_from_a_qat_checkpoint(tmp_path, capsys):
    """`lightning-snn export` rebuilds the model from the config and writes the integer export + NIR."""
    import lightning as L

    from lightning_snn.cli import build_cli

    cfg = "configs/stbp/mnist_mnistnet_q4.yaml"
    from tests.fakes import write_fake_mnist

    write_fake_mnist(tmp_path / "data", "MNIST", n_train=16, n_test=16)
    args = ["--config", cfg, "--data.init_args.root", str(tmp_path / "data"), "--data.init_args.batch_size", "8"]
    cli = build_cli(["fit", *args, "--trainer.max_steps", "2", "--trainer.logger", "false", "--trainer.limit_val_batches", "1",
                     "--trainer.default_root_dir", str(tmp_path), "--test_after_fit", "false"])
    ckpt = tmp_path / "qat.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    main(["export", *args, "--ckpt_path", str(ckpt), "--out", str(tmp_path / "out" / "mnist_q4"), "--nir"])
    reloaded = load_quantized(tmp_path / "out" / "mnist_q4")
    assert (tmp_path / "out" / "mnist_q4.nir").is_file()
    x = torch.randn(4, 1, 28, 28)
    cli.model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x), cli.model(x))
    assert isinstance(L, object)
    # the checkpoint defines the model: a config whose threshold differs from training is an error naming it,
    # reported like every configuration error of the console script (reason first, exit status 2)
    for extra, reason in ((["--model.init_args.neuron.v_threshold", "0.5"], "model.init_args.neuron.v_threshold: the config gives 0.5"),
                          (["--trainer.max_epochz", "3"], "max_epochz")):
        with pytest.raises(SystemExit) as exit_info:
            main(["export", *args, *extra, "--ckpt_path", str(ckpt), "--out", str(tmp_path / "out" / "wrong")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-2].startswith("lightning-snn export: configuration error: ") and reason in err[-2], err
    assert not (tmp_path / "out" / "wrong.json").exists()


@pytest.mark.parametrize("fault", ["read_only", "full_disk"])
def test_export_to_an_unwritable_folder_names_the_file_and_keeps_the_old_export(tmp_path, monkeypatch, fault):
    from lightning_snn.fileio import WriteError
    from tests.faults import full_disk, read_only

    out = tmp_path / "out"
    export_quantized(qat_model(8), out / "m")  # a previous export, which a failed export must leave intact
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    newer = qat_model(4)
    if fault == "read_only":
        ctx, cause = read_only(monkeypatch, out), r"Permission denied \(EACCES\)"
    else:  # room for half of the new .safetensors file
        ctx, cause = full_disk(monkeypatch, out, free_bytes=len(before["m.safetensors"]) // 2), r"No space left on device \(ENOSPC\)"
    with ctx as faults:
        with pytest.raises(WriteError, match=rf"cannot write the quantized export {out / 'm.safetensors'}: {cause}"):
            export_quantized(newer, out / "m")
    assert faults.hits or not faults.emulated
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no partial or temporary file
    assert isinstance(load_quantized(out / "m"), torch.nn.Module)


def test_learned_plif_leak_exports_at_its_current_value(tmp_path):
    """A PLIF's learned τ goes into the integer export and the NIR graph as the LIF it currently is."""
    torch.manual_seed(0)
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=3,
                 neuron={"type": "plif", "v_threshold": 0.2, "decay_input": False},
                 backbone_kwargs={"channels": [4, 8], "hidden": 16})
    for m in model.modules():
        if hasattr(m, "w"):
            m.w.data.fill_(0.3)  # τ = 1 + e^-0.3, away from the initial 2
    QuantizationAwareTraining(bits=8).apply(model)
    model.eval()
    graph = to_nir(model.backbone, (1, 8, 8))
    assert isinstance(graph.nodes["1"], nir.LIF)
    assert graph.nodes["1"].tau.flat[0] == pytest.approx(1.0 / torch.sigmoid(torch.tensor(0.3)).item(), rel=1e-6)
    rebuilt = from_nir(graph).eval()
    frames = model.encode(torch.randn(8, 1, 8, 8) * 2)
    x = torch.randn(4, 1, 8, 8) * 2
    with torch.no_grad():
        reset_states(model)
        assert torch.equal(rebuilt(frames), model.backbone(frames))
        reset_states(model)
        expected = model(x)
    _, js = export_quantized(model, tmp_path / "plif")
    assert json.loads(js.read_text())["neurons"][0]["type"] == "PLIFNode"
    with torch.no_grad():
        assert torch.equal(load_quantized(tmp_path / "plif")(x), expected)
