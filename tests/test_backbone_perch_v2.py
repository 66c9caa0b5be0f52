"""Perch v2 backbone: stand-in ONNX models and SavedModels with Perch v2's input and outputs,
stand-in label files, windowing through the embedding stage, mapping, caching, and the errors.

The stand-in computes, for a (n, 160000) float32 input: embedding = means of 1536 blocks of
100 samples over the first 153,600 samples; logits = embedding[:, :16] @ W with K = 1600
columns (> 1536, as Perch's 14,795); plus a spatial embedding [n, 16, 4, 1536] and a
spectrogram [n, 500, 128] cut from the waveform, as Perch v2 has.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from birdclef.backbones import backbone_spec, get_backbone
from birdclef.backbones.perch_v2 import ENV_VAR, LABELS_ENV_VAR, SPEC, find_outputs, load_perch_v2_labels, make_perch_v2
from birdclef.config import build_config
from birdclef.data.competition import competition_paths, list_audio, load_taxonomy
from birdclef.errors import BackboneUnavailable, SchemaError
from birdclef.features.embeddings import EmbeddingCache, embed_recording, extract
from birdclef.features.zeroshot import load_zero_shot, map_taxonomy

N = SPEC.window_samples  # 160000
K = 1600  # the stand-in's classes
HEAD = 16  # embedding dimensions the stand-in's logits read
PERCH_OUTPUTS = ("embedding", "label", "spatial_embedding", "spectrogram")
BIRD, FROG = 3, 5  # stand-in columns naming the demo's bird (by name) and frog (by name, other spacing)


def _weights(k: int = K) -> np.ndarray:
    return np.cos(np.arange(HEAD * k, dtype=np.float32).reshape(HEAD, k))


def _reference(windows: np.ndarray, dim: int = SPEC.embedding_dim) -> tuple[np.ndarray, np.ndarray]:
    """What the stand-in computes, in numpy: ((n, dim) embeddings, (n, K) logits)."""
    emb = windows[:, : dim * 100].reshape(len(windows), dim, 100).mean(axis=2)
    return emb, emb[:, :HEAD] @ _weights()


def _save_onnx(path, *, names: dict[str, str] | None = None, order=PERCH_OUTPUTS, batch: int | None = None,
               declare_shapes: bool = True, dim: int = SPEC.embedding_dim, input_len: int = N) -> str:
    """Write a stand-in ONNX model: input ``inputs`` [batch, input_len]; outputs in ``order``
    (roles from PERCH_OUTPUTS), named ``names[role]`` (default: the role)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    names = {role: (names or {}).get(role, role) for role in PERCH_OUTPUTS}
    init = [numpy_helper.from_array(_weights(), "W"), numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = []

    def cut(src: str, length: int, shape: list[int], out: str) -> None:  # out = src[:, :length] reshaped
        init.append(numpy_helper.from_array(np.array([length], np.int64), f"{out}_len"))
        init.append(numpy_helper.from_array(np.array(shape, np.int64), f"{out}_shape"))
        nodes.append(helper.make_node("Slice", [src, "zero", f"{out}_len", "axis1"], [f"{out}_cut"]))
        nodes.append(helper.make_node("Reshape", [f"{out}_cut", f"{out}_shape"], [out]))

    cut("inputs", dim * 100, [-1, dim, 100], "blocks")
    nodes.append(helper.make_node("ReduceMean", ["blocks"], ["emb"], axes=[2], keepdims=0))
    cut("emb", HEAD, [-1, HEAD], "head")
    nodes.append(helper.make_node("MatMul", ["head", "W"], ["logits"]))
    cut("inputs", 16 * 4 * 1536, [-1, 16, 4, 1536], "spatial")
    cut("inputs", 500 * 128, [-1, 500, 128], "spec")
    source = {"embedding": "emb", "label": "logits", "spatial_embedding": "spatial", "spectrogram": "spec"}
    shapes = {"embedding": [dim], "label": [K], "spatial_embedding": [16, 4, 1536], "spectrogram": [500, 128]}
    outputs = []
    for role in order:
        nodes.append(helper.make_node("Identity", [source[role]], [names[role]]))
        shape = [batch or "batch", *shapes[role]] if declare_shapes else [f"d{i}" for i in range(1 + len(shapes[role]))]
        outputs.append(helper.make_tensor_value_info(names[role], TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, "perch_v2_stand_in",
                              [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [batch or "batch", input_len])],
                              outputs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _perch_labels(path, taxonomy, *, k: int = K) -> str:
    """Perch's format: the namespace line, then one class per line; BIRD and FROG name demo classes."""
    names = [f"Standinia species{j}" for j in range(k)]
    names[BIRD] = taxonomy["scientific_name"].iloc[2]  # "Crypturellus silentii" (Aves)
    names[FROG] = "boana  MINOR"  # the demo's "Boana minor " (Amphibia): case and spacing ignored
    names[7] = "Bird_vocalization_and_bird_call_and_bird_song"  # an FSD50K class: maps to nothing
    path.write_text("\n".join(["inat2024_fsd50k", *names]) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def taxonomy(tiny_demo):
    return load_taxonomy(tiny_demo / "taxonomy.csv")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, taxonomy):
    """A folder as an ONNX conversion is shipped: one .onnx, with Perch's labels.csv copied beside it."""
    folder = tmp_path_factory.mktemp("perch_v2_onnx")
    _save_onnx(folder / "perch_v2.onnx")
    _perch_labels(folder / "labels.csv", taxonomy)
    return folder


def _windows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((n, N))).astype(np.float32)


def _assert_stand_in(bb, n: int) -> None:
    windows = _windows(n, seed=n)
    emb, logits = bb.embed_and_logits(windows)
    want_emb, want_logits = _reference(windows)
    assert emb.shape == (n, 1536) and emb.dtype == np.float32
    assert logits.shape == (n, K) and logits.dtype == np.float32
    np.testing.assert_allclose(emb, want_emb, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-4)


def test_spec_without_loading_weights():
    spec = backbone_spec("perch_v2")
    assert spec is SPEC
    got = (spec.sample_rate_hz, spec.window_s, spec.hop_s, spec.window_samples, spec.embedding_dim)
    assert got == (32_000, 5.0, 5.0, 160_000, 1536)
    assert spec.has_scores and not spec.denoise and not spec.rms_normalise


def test_onnx_folder_embeds_in_batches_and_reads_its_labels(model_dir):
    bb = get_backbone("perch_v2", model_path=str(model_dir), batch_size=16)
    assert bb.runtime == "onnxruntime" and bb.source.endswith("perch_v2.onnx") and bb.n_classes == K
    for n in (37, 16, 1):
        _assert_stand_in(bb, n)
    assert bb.embed(np.zeros((0, N), np.float32)).shape == (0, 1536)
    assert bb.logits(np.zeros((0, N), np.float32)).shape == (0, K)
    labels = bb.labels
    assert len(labels) == K and labels[BIRD] == ("Crypturellus silentii", "")
    for bad in (np.zeros(N, np.float32), np.zeros((2, N - 1), np.float32)):
        with pytest.raises(ValueError, match=r"\(n, 160000\)"):
            bb.embed(bad)


@pytest.mark.parametrize("order, names, declare_shapes", [
    (("label", "spectrogram", "embedding", "spatial_embedding"), None, True),  # swapped order
    (("spatial_embedding", "label", "spectrogram", "embedding"),  # names that say nothing
     {"embedding": "output_3", "label": "output_1", "spatial_embedding": "output_0", "spectrogram": "output_2"}, True),
    (("label", "embedding"), {"embedding": "Identity_1", "label": "Identity"}, False),  # symbolic dims only
])
def test_outputs_are_found_by_shape_not_position(tmp_path, order, names, declare_shapes):
    path = _save_onnx(tmp_path / "m.onnx", order=order, names=names, declare_shapes=declare_shapes)
    _assert_stand_in(get_backbone("perch_v2", model_path=path), 5)


def test_a_fixed_batch_input_gets_padded_batches(tmp_path):
    path = _save_onnx(tmp_path / "fixed.onnx", batch=4)
    bb = get_backbone("perch_v2", model_path=path, batch_size=16)
    for n in (10, 3):
        _assert_stand_in(bb, n)


def test_a_model_without_both_outputs_is_refused(tmp_path):
    only_embedding = _save_onnx(tmp_path / "emb.onnx", order=("embedding", "spectrogram"))
    with pytest.raises(BackboneUnavailable, match=r"\[batch, K > 1536\] logits.*spectrogram \[1, 500, 128\]"):
        get_backbone("perch_v2", model_path=only_embedding)
    v1_sized = _save_onnx(tmp_path / "v1.onnx", order=("embedding", "label"), dim=1280)
    with pytest.raises(BackboneUnavailable, match="Perch v1: use backbone 'perch'"):
        get_backbone("perch_v2", model_path=v1_sized)
    wrong_input = _save_onnx(tmp_path / "in.onnx", input_len=N // 2, dim=512)
    with pytest.raises(BackboneUnavailable, match=r"inputs tensor\(float\) \['batch', 80000\]"):
        get_backbone("perch_v2", model_path=wrong_input)


def test_ambiguous_outputs_are_refused():
    with pytest.raises(BackboneUnavailable, match="several candidates"):
        find_outputs({"a": (1, 1536), "b": (1, 1536), "label": (1, 2000)}, "m.onnx")
    # a name breaks a tie between outputs of the same shape
    assert find_outputs({"pooled": (2, 1536), "embedding": (2, 1536), "x": (2, 2000)}, "m") == ("embedding", "x")


def test_label_files(tmp_path, taxonomy):
    perch = _perch_labels(tmp_path / "labels.csv", taxonomy, k=10)
    labels = load_perch_v2_labels(perch, n_classes=10)
    assert len(labels) == 10 and labels[FROG] == ("boana  MINOR", "")
    with pytest.raises(SchemaError, match="10 classes after its header line, but the model gives 11"):
        load_perch_v2_labels(perch, n_classes=11)
    # one class per line without a header: accepted when the count is exactly the model's
    assert load_perch_v2_labels(_headerless(tmp_path, 10), n_classes=10)[0] == ("Standinia species0", "")
    named = tmp_path / "named.csv"
    named.write_text("common_name,scientific_name,inat_taxon_id\nMossy Toad,Eleutherodactylus oldname,1438548\n"
                     "Nobody,Nullus nullus,\n", encoding="utf-8")
    assert load_perch_v2_labels(named) == [("Eleutherodactylus oldname", "Mossy Toad", "1438548"),
                                           ("Nullus nullus", "Nobody", "")]


def _headerless(tmp_path, k: int):
    path = tmp_path / f"plain{k}.csv"
    path.write_text("".join(f"Standinia species{j}\n" for j in range(k)), encoding="utf-8")
    return path


def test_taxonomy_maps_by_name_and_by_inat_id_non_birds_included(taxonomy):
    # demo classes: 1438548 (frog, id 1438548), 612806 "Boana minor " (frog), cineup1 (bird), slaant1 (bird)
    species = [("Standinia one", "", ""), ("Eleutherodactylus oldname", "", "1438548"), ("Boana minor", "x"),
               ("Crypturellus silentii", ""), ("Myiobius montanus", "", 999)]
    # by id (column 1: a renamed species), by name (2: a frog, 3: a bird); slaant1 (id 431829) maps by
    # name to column 4, whose id (999) is another: ids decide only when one of them matches
    assert map_taxonomy(taxonomy, species).tolist() == [1, 2, 3, 4]
    # an id wins over a name; ids compare as numbers written any way ("591427.0")
    species.append(("Someone else", "", "591427.0"))
    assert map_taxonomy(taxonomy, species).tolist() == [1, 2, 5, 4]
    # two-element entries keep the old behaviour
    assert map_taxonomy(taxonomy, [("Boana minor", "x")]).tolist() == [-1, 0, -1, -1]
    # an empty name matches no class, not even one without a scientific name
    assert map_taxonomy(taxonomy.assign(scientific_name=""), [("", ""), ("", "", "")]).tolist() == [-1] * 4


def test_windows_logits_and_cache_through_the_embedding_stage(tiny_demo, taxonomy, model_dir, tmp_path):
    config = build_config(data_dir=str(tiny_demo), work_dir=str(tmp_path), backbone="perch_v2",
                          backbone_path=str(model_dir), n_workers=1)
    assert (config.hop_s, config.denoise, config.rms_normalise) == (5.0, False, False)
    zs = load_zero_shot(config, taxonomy)
    assert zs is not None and zs.class_columns.tolist() == [-1, FROG, BIRD, -1]
    f = list_audio(competition_paths(tiny_demo).test_soundscapes)[0]
    results, report = extract([f], config=config, need_speech=False, score_columns=zs.score_columns, progress=False)
    assert report["status"].tolist() == ["computed"]
    e = results[str(f)]
    # a 20-s soundscape at 32 kHz: four 5-s windows, each the stand-in applied to its own samples
    x, sr = sf.read(f, dtype="float32")
    assert sr == 32_000 and len(x) == 4 * N
    assert e.starts_s.tolist() == [0.0, 5.0, 10.0, 15.0]
    want_emb, want_logits = _reference(x.reshape(4, N))
    np.testing.assert_allclose(e.embeddings, want_emb, rtol=1e-2, atol=1e-4)  # cached as float16
    assert e.score_columns.tolist() == [BIRD, FROG]
    np.testing.assert_allclose(e.logits, want_logits[:, [BIRD, FROG]], rtol=1e-2, atol=1e-2)
    # the cache holds the logits: a second pass reads them instead of running the model again
    cache = EmbeddingCache(config.work_dir, config)
    assert cache.load(f, score_columns=zs.score_columns) is not None
    assert cache.load(f, score_columns=np.array([BIRD, FROG, 9])) is None  # a column it lacks: recomputed
    again, report = extract([f], config=config, need_speech=False, score_columns=zs.score_columns, progress=False)
    assert report["status"].tolist() == ["cached"]
    window = zs.window_logits(again[str(f)], config.window_s)
    assert window.shape == (4, 4) and (window[:, [0, 3]] == 0).all()
    np.testing.assert_allclose(window[:, [2, 1]], want_logits[:, [BIRD, FROG]], rtol=1e-2, atol=1e-2)
    # the same windows straight through embed_recording: the frames are the cached ones
    direct = embed_recording(f, backbone=get_backbone("perch_v2", model_path=str(model_dir)), config=config,
                             need_speech=False, score_columns=zs.score_columns)
    np.testing.assert_array_equal(direct.embeddings, e.embeddings)


def test_inat_ids_from_a_label_file_reach_the_zero_shot_mapping(tiny_demo, taxonomy, model_dir, tmp_path,
                                                                monkeypatch):
    named = tmp_path / "with_ids.csv"
    rows = [f"Standinia species{j},," for j in range(K)]
    rows[11] = "Eleutherodactylus oldname,Mossy Toad,1438548"  # demo class 0 by its iNat id only
    named.write_text("\n".join(["scientific_name,common_name,inat_taxon_id", *rows]) + "\n", encoding="utf-8")
    monkeypatch.setenv(LABELS_ENV_VAR, str(named))
    config = build_config(data_dir=str(tiny_demo), work_dir=str(tmp_path), backbone="perch_v2",
                          backbone_path=str(model_dir))
    assert load_zero_shot(config, taxonomy).class_columns.tolist() == [11, -1, -1, -1]


def test_savedmodel_with_perch_v2_signature(tmp_path, taxonomy):
    tf = pytest.importorskip("tensorflow")

    class StandIn(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.constant(_weights())

        @tf.function(input_signature=[tf.TensorSpec([None, N], tf.float32, name="inputs")])
        def serve(self, inputs):
            emb = tf.reduce_mean(tf.reshape(inputs[:, : 1536 * 100], [-1, 1536, 100]), axis=2)
            return {"spectrogram": tf.reshape(inputs[:, : 500 * 128], [-1, 500, 128]),
                    "label": tf.matmul(emb[:, :HEAD], self.w), "embedding": emb,
                    "spatial_embedding": tf.reshape(inputs[:, : 16 * 4 * 1536], [-1, 16, 4, 1536])}

    module = StandIn()
    folder = tmp_path / "perch_v2_cpu" / "1"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    (folder / "assets").mkdir(exist_ok=True)
    _perch_labels(folder / "assets" / "labels.csv", taxonomy)
    bb = get_backbone("perch_v2", model_path=str(folder), batch_size=8)
    assert bb.runtime == "tensorflow" and bb.n_classes == K
    _assert_stand_in(bb, 11)
    assert map_taxonomy(taxonomy, bb.labels).tolist() == [-1, FROG, BIRD, -1]


def test_missing_model_or_runtime_is_a_clear_error(monkeypatch, tmp_path, model_dir):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(BackboneUnavailable, match=ENV_VAR):
        get_backbone("perch_v2")
    with pytest.raises(BackboneUnavailable, match="no Perch v2 model at"):
        get_backbone("perch_v2", model_path=str(tmp_path / "nowhere"))
    with pytest.raises(BackboneUnavailable, match="no saved_model.pb or .onnx file"):
        get_backbone("perch_v2", model_path=str(tmp_path))
    (tmp_path / "a.onnx").write_bytes(b"")
    (tmp_path / "b.onnx").write_bytes(b"")
    with pytest.raises(BackboneUnavailable, match=r"2 \.onnx files \(a\.onnx, b\.onnx\)"):
        get_backbone("perch_v2", model_path=str(tmp_path))
    with pytest.raises(BackboneUnavailable, match="not a loadable ONNX model"):
        get_backbone("perch_v2", model_path=str(tmp_path / "a.onnx"))
    monkeypatch.setenv(ENV_VAR, str(model_dir))
    assert get_backbone("perch_v2").source == str(model_dir / "perch_v2.onnx")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "m.onnx").write_bytes((model_dir / "perch_v2.onnx").read_bytes())
    with pytest.raises(BackboneUnavailable, match=LABELS_ENV_VAR):
        make_perch_v2(model_path=str(lonely)).labels
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(BackboneUnavailable, match=r"pip install birdclef\[onnx\]"):
        get_backbone("perch_v2", model_path=str(model_dir))
