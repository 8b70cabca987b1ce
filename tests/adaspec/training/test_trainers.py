import copy

import pytest
import torch
from helpers import make_tiny_model
from transformers import TrainingArguments

from adaspec.data import (
    DataCollatorForCompletion,
    make_synthetic_examples,
    to_hf_dataset,
    tokenize_examples,
)
from adaspec.losses import SelectiveLossSettings, adaspec_token_loss, shift_for_causal_lm
from adaspec.training.config import LossConfig
from adaspec.training.trainers import AdaSPECTrainer, KDTrainer, TargetTrainer


@pytest.fixture(scope="module")
def dataset(tiny_tokenizer):
    examples = make_synthetic_examples(24, seed=0)
    features, _ = tokenize_examples(examples, tiny_tokenizer, max_length=96)
    return to_hf_dataset(features)


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=True,
        seed=0,
    )
    base.update(kw)
    return TrainingArguments(**base)


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _changed(before, model):
    return any(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_target_trainer_runs_and_updates(tmp_path, tiny_tokenizer, dataset):
    model = make_tiny_model(vocab_size=len(tiny_tokenizer)).train()
    before = _params(model)
    trainer = TargetTrainer(
        model=model,
        args=_args(tmp_path),
        train_dataset=dataset,
        data_collator=DataCollatorForCompletion(tiny_tokenizer),
        processing_class=tiny_tokenizer,
    )
    out = trainer.train()
    assert out.global_step == 3 and _changed(before, model)


@pytest.mark.parametrize("family", ["gpt_neox", "llama", "qwen2"])
def test_adaspec_trainer_runs_each_family(tmp_path, tiny_tokenizer, dataset, family):
    n = len(tiny_tokenizer)
    target = make_tiny_model(family, seed=1, vocab_size=n + 8)  # padded rows are allowed
    ref = make_tiny_model(family, seed=2, vocab_size=n)
    draft = make_tiny_model(family, seed=3, vocab_size=n).train()
    before = _params(draft)
    trainer = AdaSPECTrainer(
        model=draft,
        args=_args(tmp_path),
        train_dataset=dataset,
        data_collator=DataCollatorForCompletion(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        target_model=target,
        ref_model=ref,
        k=0.4,
    )
    trainer.train()
    assert _changed(before, draft)
    assert not any(p.requires_grad for p in target.parameters())
    logged = [h for h in trainer.state.log_history if "adaspec/kept_fraction" in h]
    assert logged and all(0.3 < h["adaspec/kept_fraction"] <= 0.5 for h in logged)


def test_adaspec_trainer_loss_matches_loss_module(tmp_path, tiny_tokenizer, dataset):
    n = len(tiny_tokenizer)
    target, ref = make_tiny_model(seed=1, vocab_size=n), make_tiny_model(seed=2, vocab_size=n)
    draft = make_tiny_model(seed=3, vocab_size=n)
    trainer = AdaSPECTrainer(
        model=draft,
        args=_args(tmp_path),
        train_dataset=dataset,
        data_collator=DataCollatorForCompletion(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        target_model=target,
        ref_model=ref,
        k=0.4,
    )
    batch = DataCollatorForCompletion(tiny_tokenizer)([dataset[i] for i in range(4)])
    got = trainer.compute_loss(draft, dict(batch), num_items_in_batch=None)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    d, valid = shift_for_causal_lm(draft(**inputs).logits, batch["labels"])
    want = adaspec_token_loss(
        d,
        target(**inputs).logits[:, :-1],
        ref(**inputs).logits[:, :-1],
        valid,
        SelectiveLossSettings(k=0.4),
    ).loss
    torch.testing.assert_close(got, want)


def test_adaspec_trainer_chunked_equals_plain(tmp_path, tiny_tokenizer, dataset):
    n = len(tiny_tokenizer)
    target, ref = make_tiny_model(seed=1, vocab_size=n), make_tiny_model(seed=2, vocab_size=n)
    draft = make_tiny_model(seed=3, vocab_size=n)
    batch = dict(DataCollatorForCompletion(tiny_tokenizer)([dataset[i] for i in range(4)]))
    losses, grads = [], []
    for chunked in (False, True):
        model = copy.deepcopy(draft).train()
        trainer = AdaSPECTrainer(
            model=model,
            args=_args(tmp_path),
            train_dataset=dataset,
            data_collator=DataCollatorForCompletion(tiny_tokenizer),
            processing_class=tiny_tokenizer,
            target_model=target,
            ref_model=ref,
            loss_config=LossConfig(k=0.4, chunked=chunked, chunk_size=37),
        )
        loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(500))
        loss.backward()
        losses.append(loss.detach())
        grads.append(
            {n_: p.grad.clone() for n_, p in model.named_parameters() if p.grad is not None}
        )
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_kd_trainer_keeps_all_tokens(tmp_path, tiny_tokenizer, dataset):
    n = len(tiny_tokenizer)
    trainer = KDTrainer(
        model=make_tiny_model(seed=3, vocab_size=n).train(),
        args=_args(tmp_path),
        train_dataset=dataset,
        data_collator=DataCollatorForCompletion(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        target_model=make_tiny_model(seed=1, vocab_size=n),
    )
    trainer.train()
    logged = [
        h["adaspec/kept_fraction"]
        for h in trainer.state.log_history
        if "adaspec/kept_fraction" in h
    ]
    assert logged and all(f == 1.0 for f in logged)


def test_adaspec_trainer_rejects_mismatched_vocabulary(tmp_path, tiny_tokenizer, dataset):
    n = len(tiny_tokenizer)
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        AdaSPECTrainer(
            model=make_tiny_model(vocab_size=n),
            args=_args(tmp_path),
            train_dataset=dataset,
            processing_class=tiny_tokenizer,
            target_model=make_tiny_model(vocab_size=n - 50),
            ref_model=make_tiny_model(vocab_size=n),
            k=0.4,
        )


@pytest.mark.parametrize("k", [0.0, 1.5, -0.2])
def test_adaspec_trainer_rejects_bad_k(tmp_path, tiny_tokenizer, dataset, k):
    n = len(tiny_tokenizer)
    with pytest.raises(ValueError, match="k must be in"):
        AdaSPECTrainer(
            model=make_tiny_model(vocab_size=n),
            args=_args(tmp_path),
            train_dataset=dataset,
            processing_class=tiny_tokenizer,
            target_model=make_tiny_model(vocab_size=n),
            ref_model=make_tiny_model(vocab_size=n),
            k=k,
        )


def test_adaspec_trainer_teacher_cache_equals_online_target(tmp_path, tiny_tokenizer, dataset):
    from adaspec.training.teacher_cache import TeacherCache, with_example_index

    n = len(tiny_tokenizer)
    target = make_tiny_model(seed=1, vocab_size=n + 4)
    ref, draft = make_tiny_model(seed=2, vocab_size=n), make_tiny_model(seed=3, vocab_size=n)
    collator = DataCollatorForCompletion(tiny_tokenizer)
    indexed = with_example_index(dataset)
    cache = TeacherCache.build(
        target, dataset, collator, batch_size=5, vocab_size=n, progress=False
    )
    assert len(cache) == len(dataset)
    batch = dict(collator([indexed[i] for i in (3, 0, 7, 5)]))
    assert batch["example_index"].tolist() == [3, 0, 7, 5]
    losses = []
    for teacher_cache in (None, cache):
        trainer = AdaSPECTrainer(
            model=draft,
            args=_args(tmp_path),
            train_dataset=indexed,
            data_collator=collator,
            processing_class=tiny_tokenizer,
            target_model=target,
            ref_model=ref,
            k=0.4,
            teacher_cache=teacher_cache,
        )
        losses.append(
            trainer.compute_loss(draft, dict(batch), num_items_in_batch=torch.tensor(300))
        )
    torch.testing.assert_close(losses[0], losses[1])
    # A batch whose examples do not match the cache is refused.
    bad = dict(batch, example_index=torch.tensor([0, 0, 0, 0]))
    with pytest.raises(ValueError, match="dataset changed"):
        trainer.compute_loss(draft, bad)


def test_adaspec_trainer_teacher_cache_trains(tmp_path, tiny_tokenizer, dataset):
    from adaspec.training.teacher_cache import TeacherCache, with_example_index

    n = len(tiny_tokenizer)
    target, ref = make_tiny_model(seed=1, vocab_size=n), make_tiny_model(seed=2, vocab_size=n)
    draft = make_tiny_model(seed=3, vocab_size=n).train()
    collator = DataCollatorForCompletion(tiny_tokenizer)
    cache = TeacherCache.build(target, dataset, collator, vocab_size=n, progress=False)
    before = _params(draft)
    trainer = AdaSPECTrainer(
        model=draft,
        args=_args(tmp_path),
        train_dataset=with_example_index(dataset),
        data_collator=collator,
        processing_class=tiny_tokenizer,
        target_model=target,
        ref_model=ref,
        k=0.4,
        teacher_cache=cache,
    )
    trainer.train()
    assert _changed(before, draft)


def _loss_and_grads(trainer, model, batch):
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(300))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("family", ["gpt_neox", "llama", "qwen2"])
def test_adaspec_trainer_hidden_cache_equals_uncached(tmp_path, tiny_tokenizer, dataset, family):
    """Hidden-state caches of target and reference give the plain path's loss and gradients."""
    from adaspec.training.teacher_cache import TeacherCache, with_example_index

    n = len(tiny_tokenizer)
    # The target has padded embedding rows, as Pythia's: the cached path must cut them too.
    target = make_tiny_model(family, seed=1, vocab_size=n + 4)
    ref = make_tiny_model(family, seed=2, vocab_size=n)
    draft = make_tiny_model(family, seed=3, vocab_size=n).train()
    collator = DataCollatorForCompletion(tiny_tokenizer)
    indexed = with_example_index(dataset)
    build = dict(batch_size=5, vocab_size=n, progress=False, kind="hidden")
    t_cache = TeacherCache.build(target, dataset, collator, **build)
    r_cache = TeacherCache.build(ref, dataset, collator, **build)
    hidden = target.config.hidden_size
    assert all(v.shape[-1] == hidden for v in t_cache.values)
    assert t_cache.nbytes == sum(v.shape[0] for v in t_cache.values) * hidden * 4
    batch = collator([indexed[i] for i in (3, 0, 7, 5)])
    results = []
    for caches in (
        {},
        {"teacher_cache": t_cache, "ref_cache": r_cache},
        {"teacher_cache": t_cache},
    ):
        trainer = AdaSPECTrainer(
            model=draft,
            args=_args(tmp_path),
            train_dataset=indexed,
            data_collator=collator,
            processing_class=tiny_tokenizer,
            target_model=target,
            ref_model=ref,
            loss_config=LossConfig(k=0.4, chunked=False, chunk_size=23),
            **caches,
        )
        assert trainer.use_chunked == bool(caches)
        results.append(_loss_and_grads(trainer, draft, batch))
    (want, want_grads), *cached = results
    for loss, grads in cached:
        torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
        assert grads.keys() == want_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], want_grads[name], rtol=1e-4, atol=1e-6)
    # A batch whose examples do not match the cache is refused.
    bad = dict(batch, example_index=torch.tensor([0, 0, 0, 0]))
    with pytest.raises(ValueError, match="dataset changed"):
        trainer.compute_loss(draft, bad)


def test_adaspec_trainer_rejects_incompatible_caches(tmp_path, tiny_tokenizer, dataset):
    from adaspec.training.teacher_cache import TeacherCache

    n = len(tiny_tokenizer)
    target, ref = make_tiny_model(seed=1, vocab_size=n), make_tiny_model(seed=2, vocab_size=n)
    collator = DataCollatorForCompletion(tiny_tokenizer)
    small = dataset.select(range(4))
    logits = TeacherCache.build(target, small, collator, vocab_size=n, progress=False)
    hidden = TeacherCache.build(target, small, collator, progress=False, kind="hidden")

    def make(loss, **caches):
        return AdaSPECTrainer(
            model=make_tiny_model(seed=3, vocab_size=n),
            args=_args(tmp_path),
            train_dataset=dataset,
            processing_class=tiny_tokenizer,
            target_model=target,
            ref_model=caches.pop("ref", ref),
            loss_config=loss,
            **caches,
        )

    with pytest.raises(ValueError, match="one kind"):
        make(LossConfig(k=0.4), teacher_cache=logits, ref_cache=hidden)
    with pytest.raises(ValueError, match="loss.chunked=false"):
        make(LossConfig(k=0.4, chunked=True), teacher_cache=logits)
    with pytest.raises(ValueError, match="scope"):
        make(LossConfig(k=0.4, scope="sequence"), teacher_cache=hidden)
    with pytest.raises(ValueError, match="without ref_model"):
        make(LossConfig(k=1.0), ref=None, ref_cache=hidden)
    with pytest.raises(ValueError, match="cache kind"):
        TeacherCache([], kind="probs")


def test_adaspec_trainer_step_schedule_is_kd_then_selective(tmp_path, tiny_tokenizer, dataset):
    """KD for the first half of the optimizer steps, then AdaSPEC's k (a late phase)."""
    n = len(tiny_tokenizer)
    trainer = AdaSPECTrainer(
        model=make_tiny_model(seed=3, vocab_size=n).train(),
        args=_args(tmp_path, max_steps=6),
        train_dataset=dataset,
        data_collator=DataCollatorForCompletion(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        target_model=make_tiny_model(seed=1, vocab_size=n),
        ref_model=make_tiny_model(seed=2, vocab_size=n),
        loss_config=LossConfig(k=0.4, k_schedule="step", k_schedule_fraction=0.5),
    )
    trainer.train()
    kept = [h["adaspec/kept_fraction"] for h in trainer.state.log_history if "loss" in h]
    assert len(kept) == 6
    assert kept[:3] == [1.0, 1.0, 1.0]
    assert kept[3:] == pytest.approx([0.4] * 3, abs=0.02)


def test_adaspec_trainer_k_overrides_loss_config_and_kd_trainer_forces_plain_kd(
    tmp_path, tiny_tokenizer, dataset
):
    n = len(tiny_tokenizer)
    common = dict(
        model=make_tiny_model(vocab_size=n),
        args=_args(tmp_path),
        train_dataset=dataset,
        processing_class=tiny_tokenizer,
        target_model=make_tiny_model(vocab_size=n),
    )
    loss = LossConfig(k=0.4, divergence="jsd", k_schedule="linear", selection="random")
    trainer = AdaSPECTrainer(
        **common, ref_model=make_tiny_model(vocab_size=n), k=0.25, loss_config=loss
    )
    assert trainer.loss_config == loss.replace(k=0.25) and not hasattr(trainer, "k")
    kd = KDTrainer(**common, loss_config=loss)
    assert kd.loss_config == loss.plain_kd()
    assert (kd.loss_config.k, kd.loss_config.k_schedule, kd.loss_config.divergence) == (
        1.0,
        "constant",
        "jsd",
    )
    with pytest.raises(ValueError, match="KDTrainer keeps every response token"):
        KDTrainer(**common, k=0.4)
