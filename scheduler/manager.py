"""Choose hosts for a request, and record why.

``filter_scheduler`` (the default) runs the enabled filters in order over the
in-memory host states, weighs the survivors and returns them best first (with
``host_subset_size`` > 1 the first is picked at random among the best N);
``chance`` picks at random among the hosts that are up, enabled and not tried.
Either way a :class:`Decision` records, for every filter, which hosts went in
and out and why, and the weights of the survivors: it is logged under the
request id and returned to the flow, which persists it with the step.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import random
from collections.abc import Hashable
from operator import add
from typing import Any

from scheduler.filters import BaseHostFilter, all_filters
from scheduler.host_state import HostState, HostStateCache
from scheduler.request_spec import RequestSpec
from scheduler.weights import BaseHostWeigher, all_weighers, scaling
from vmflow import exception
from vmflow.config import Config

LOG = logging.getLogger(__name__)

WEIGHTS_KEPT = 20


@dataclasses.dataclass
class FilterStep:
    name: str
    hosts_in: int
    hosts_out: int
    rejected: dict[str, str]  # host -> reason


@dataclasses.dataclass
class Decision:
    """Why the scheduler chose what it chose (or nothing)."""

    driver: str
    hosts: int
    steps: list[FilterStep] = dataclasses.field(default_factory=list)
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    candidates: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lines(self, max_reasons: int = 20) -> list[str]:
        """The decision as log lines an operator can read (the API has all of it)."""
        out = [f"{self.driver}: {self.hosts} hosts considered"]
        for step in self.steps:
            out.append(f"{step.name}: {step.hosts_in} in, {step.hosts_out} out")
            reasons = list(step.rejected.items())
            out.extend(f"  {host}: {step.name}: {why}" for host, why in reasons[:max_reasons])
            if len(reasons) > max_reasons:
                out.append(f"  ... and {len(reasons) - max_reasons} more rejected by "
                           f"{step.name} (all of them are in the instance action's events)")
        if self.weights:
            ranked = sorted(self.weights.items(), key=lambda kv: -kv[1])
            out.append("weights: " + ", ".join(f"{h}={w:.3f}" for h, w in ranked[:10]))
        if self.candidates:
            out.append(f"chosen: {self.candidates[0]}")
        return out

    def no_valid_host_reason(self) -> str:
        """Which filter eliminated the last hosts, and why."""
        if not self.hosts:
            return "There are no compute hosts."
        last = next((s for s in reversed(self.steps) if s.rejected), None)
        if last is None:
            return "No host passed the filters."
        shown = "; ".join(f"{h}: {why}" for h, why in list(last.rejected.items())[:5])
        more = len(last.rejected) - 5
        return (f"{last.name} eliminated the last {len(last.rejected)} host(s) ({shown}"
                + (f"; and {more} more" if more > 0 else "") + ").")


def _selected(names: list[str], available: dict[str, type]) -> list[type]:
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"unknown or unavailable scheduler plugins: {', '.join(unknown)}")
    return [available[n] for n in names]


class Scheduler:
    def __init__(self, cache: HostStateCache, config: Config | None = None, *,
                 max_candidates: int = 10) -> None:
        self.cache = cache
        self.config = config or Config(data_dir="/nonexistent")
        self.max_candidates = max_candidates
        filters = all_filters()
        if "all" not in self.config.available_filters:
            filters = {n: c for n, c in filters.items() if n in self.config.available_filters}
        self.filters: list[BaseHostFilter] = [
            cls(self.config) for cls in _selected(list(self.config.enabled_filters), filters)]
        self.weighers: list[BaseHostWeigher] = [cls(self.config)
                                                for cls in all_weighers().values()]
        # Verdicts of filters that depend on no usage, per (filter, key), valid
        # until the host states change in what such filters read (see
        # BaseHostFilter.cache_key and HostStateCache.generation).
        self._static: dict[tuple[str, Hashable], dict[str, str]] = {}
        self._static_generation = -1
        # The outcome of the leading run of such filters (their steps and the
        # hosts that pass them all), per combination of keys, valid until the
        # next reload: it holds the host state objects of that load.
        self._prefix: dict[tuple, tuple[list[FilterStep], list[HostState]]] = {}
        self._prefix_load = -1
        # The chance driver still never picks a host that is down or already tried.
        self._chance_filters = [all_filters()[name](self.config)
                                for name in ("RetryFilter", "ComputeFilter")]

    def _static_verdicts(self, flt: BaseHostFilter, key: Hashable, spec: RequestSpec,
                         everyone: list[HostState]) -> dict[str, str]:
        """Rejections of ``flt`` over all hosts, computed once per key and load."""
        generation = getattr(self.cache, "generation", 0)
        if generation != self._static_generation:
            self._static.clear()
            self._static_generation = generation
        verdicts = self._static.get((flt.name, key))
        if verdicts is None:
            verdicts = {}
            for host in everyone:
                why = flt.rejection(host, spec)
                if why is not None:
                    verdicts[host.host] = why
            self._static[(flt.name, key)] = verdicts
        return verdicts

    def _filter(self, hosts: list[HostState], spec: RequestSpec, decision: Decision
                ) -> list[HostState]:
        """Run the filters in order, recording what each let in and kept out."""
        keys = [flt.cache_key(spec) for flt in self.filters]
        lead = next((i for i, key in enumerate(keys) if key is None), len(keys))
        if lead:
            steps, hosts = self._leading_run(hosts, spec, keys[:lead])
            decision.steps.extend(steps)
        if not hosts:
            return []
        return self._filter_from(lead, hosts, spec, keys, decision)

    def _leading_run(self, hosts: list[HostState], spec: RequestSpec, keys: list[Hashable]
                     ) -> tuple[list[FilterStep], list[HostState]]:
        """The steps and survivors of the filters before the first one that must
        be asked every time: the same for every request with the same keys
        until the host states are reloaded, so computed once per load.  (With
        the default order that is the zone, service, capability, image and
        aggregate filters: most of the work, and all of the hosts.)"""
        loads = getattr(self.cache, "loads", None)  # a view that cannot say: no caching
        load = (getattr(self.cache, "generation", 0), loads)
        if load != self._prefix_load or len(self._prefix) > 1024:
            self._prefix.clear()
            self._prefix_load = load
        # The hosts filtered are all of them, or only the one an admin asked
        # for (select): that is part of what the outcome depends on.
        combined = (*keys, spec.requested_host)
        found = self._prefix.get(combined)
        if found is None:
            decision = Decision(driver="", hosts=len(hosts))
            survivors = self._filter_from(0, hosts, spec, keys, decision, stop=len(keys))
            found = (decision.steps, survivors)
            if loads is not None:
                self._prefix[combined] = found
        return found

    def _filter_from(self, start: int, hosts: list[HostState], spec: RequestSpec,
                     keys: list[Hashable | None], decision: Decision,
                     stop: int | None = None) -> list[HostState]:
        """Filters ``start``..``stop`` over ``hosts``.

        Cached (usage-independent) verdicts are applied to a set of host names,
        so a run of them costs set operations, not a pass over the hosts each.
        """
        everyone = hosts
        alive: set[str] | None = None  # names still in while ``hosts`` is stale
        for flt, key in zip(self.filters[start:stop], keys[start:stop], strict=True):
            if key is not None:
                verdicts = self._static_verdicts(flt, key, spec, everyone)
                if alive is None:
                    alive = {h.host for h in hosts}
                out = alive & verdicts.keys()
                decision.steps.append(FilterStep(flt.name, len(alive), len(out),
                                                 {name: verdicts[name] for name in out}))
                alive -= out
                if not alive:
                    return []
                continue
            if alive is not None:
                hosts, alive = [h for h in hosts if h.host in alive], None
            passed, rejected = self._dynamic(flt, hosts, spec)
            decision.steps.append(FilterStep(flt.name, len(hosts), len(rejected), rejected))
            hosts = passed
            if not hosts:
                return []
        if alive is not None:
            hosts = [h for h in hosts if h.host in alive]
        return hosts

    @staticmethod
    def _dynamic(flt: BaseHostFilter, hosts: list[HostState], spec: RequestSpec
                 ) -> tuple[list[HostState], dict[str, str]]:
        """A filter whose verdicts depend on usage: asked for these hosts now."""
        rejected: dict[str, str] = {}
        named = flt.named_rejections(spec)
        if named is not None:
            if not named:
                return hosts, rejected
            for host in [h for h in hosts if h.host in named]:
                why = flt.rejection(host, spec)
                if why is not None:
                    rejected[host.host] = why
            return ([h for h in hosts if h.host not in rejected] if rejected else hosts,
                    rejected)
        passed = flt.passing(hosts, spec)
        if len(passed) != len(hosts):
            kept = set(passed)  # host states hash by identity
            rejected = {h.host: flt.rejection(h, spec) or "rejected"
                        for h in hosts if h not in kept}
        return passed, rejected

    def _weigh(self, hosts: list[HostState], spec: RequestSpec, decision: Decision
               ) -> list[HostState]:
        """Hosts ranked by the sum over weighers of multiplier × normalised score.

        Normalising is ``factor × score − offset`` per weigher; the offsets add
        up to one constant that does not change the order, so hosts are ranked
        on the products alone (a few passes in C over the scores) and the
        constant is taken off only for the weights that are recorded.
        """
        totals: list[float] | None = None
        offset = 0.0
        for weigher in self.weighers:
            multiplier = weigher.multiplier()
            if not multiplier:
                continue
            scores = weigher.weigh_all(hosts, spec)
            factor, shift = scaling(scores)
            if not factor:
                continue
            factor *= multiplier
            offset += multiplier * shift
            products = map(factor.__mul__, scores)
            totals = list(products) if totals is None else list(map(add, totals, products))
        if totals is None:
            totals = [0.0] * len(hosts)
        # Only the best few are needed: the candidates, and the weights an
        # operator compares (all of them would make each decision as large as
        # the cloud).  Ties go to the host name, so decisions are repeatable:
        # every host tied with the last one kept is a contender.
        keep = max(self.max_candidates, WEIGHTS_KEPT, self.config.host_subset_size)
        if len(hosts) > keep:
            cutoff = heapq.nlargest(keep, totals)[-1]
            contenders = [i for i, t in enumerate(totals) if t >= cutoff]
        else:
            contenders = range(len(hosts))
        best = sorted(contenders, key=lambda i: (-totals[i], hosts[i].host))[:keep]
        decision.weights = {hosts[i].host: round(totals[i] - offset, 6)
                            for i in best[:WEIGHTS_KEPT]}
        ranked = [hosts[i] for i in best]
        subset = max(1, min(self.config.host_subset_size, len(ranked)))
        if subset > 1:  # spread racing schedulers over the best few
            pick = random.randrange(subset)
            ranked.insert(0, ranked.pop(pick))
        return ranked

    @staticmethod
    def _requested(hosts: list[HostState], wanted: str, decision: Decision
                   ) -> list[HostState]:
        """Only the host an admin asked for (2.74), recorded as a step."""
        kept = [h for h in hosts if h.host == wanted]
        out = {h.host: f"not the requested host {wanted}" for h in hosts if h.host != wanted}
        decision.steps.append(FilterStep("RequestedDestination", len(hosts), len(out), out))
        return kept

    def select(self, spec: RequestSpec) -> tuple[list[str], Decision]:
        """Hosts for ``spec``, best first, and the decision; NoValidHost if none."""
        hosts = self.cache.snapshot()
        driver = self.config.scheduler_driver
        decision = Decision(driver=driver, hosts=len(hosts))
        if spec.requested_host is not None:
            hosts = self._requested(hosts, spec.requested_host, decision)
        if driver == "chance":
            survivors = list(hosts)
            for flt in self._chance_filters:
                survivors = [h for h in survivors if flt.host_passes(h, spec)]
            random.shuffle(survivors)
            ranked = survivors
        else:
            ranked = self._weigh(self._filter(hosts, spec, decision), spec, decision)
        decision.candidates = [h.host for h in ranked[: self.max_candidates]]
        if LOG.isEnabledFor(logging.INFO):
            for line in decision.lines():
                LOG.info("scheduler %s", line)
        if not decision.candidates:
            raise exception.NoValidHost(reason=decision.no_valid_host_reason())
        return decision.candidates, decision
