"""Analysis engines: one interface, two implementations.

    engine.extract(conversation) -> (result dict, Usage)       one conversation, cached by hash
    engine.extract_many(conversations, mission) -> [(result dict | None, Usage)]
        None: the engine could not analyse that conversation (left out, asked again next run)
        an AIUnavailable: the model was unreachable (the others are kept; the run is retried)
    engine.synthesise(items, context) -> (Result, Usage)       the campaign, from the extractions

`local` (here) is deterministic, offline text analytics: VADER lexicon sentiment, TF-IDF key
phrases, LSA + k-means clustering, extractive summary. `anthropic` (claude.py) asks Claude
through tap.ai's client. Both build the stored result with `assemble`, so the page, exports and
the command read one shape.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

from conversations.analysis.inputs import ConversationInput

SUMMARY_MAX_WORDS = 300
LABELS = ("positive", "neutral", "negative")
HISTOGRAM_BINS = 10


@dataclass
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0
    requests: int = 0

    def add(self, other: Usage) -> None:
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write
        self.requests += other.requests


@dataclass(frozen=True)
class Item:
    """One included conversation with its (cached) extraction."""

    id: str
    number: int
    status: str
    result: dict


@dataclass
class Result:
    themes: list[dict]
    groupings: dict[str, list[str]]
    conversations: dict[str, dict]
    key_findings: list[dict]
    sentiment_distribution: dict
    executive_summary: str
    model: str = ""
    steps: int = 1
    extra: dict = field(default_factory=dict)
    # Stored as CampaignAnalysis.engine_state (what an in-place update needs).
    state: dict = field(default_factory=dict)


def sentiment_label(score: float) -> str:
    # VADER's own thresholds for its compound score.
    if score >= 0.05:
        return "positive"
    if score <= -0.05:
        return "negative"
    return "neutral"


def distribution(scores: list[float]) -> dict:
    counts = dict.fromkeys(LABELS, 0)
    histogram = [0] * HISTOGRAM_BINS
    for score in scores:
        counts[sentiment_label(score)] += 1
        index = min(HISTOGRAM_BINS - 1, int((max(-1.0, min(1.0, score)) + 1) / 2 * HISTOGRAM_BINS))
        histogram[index] += 1
    total = len(scores)
    return {
        "counts": counts,
        "total": total,
        "mean": round(sum(scores) / total, 3) if total else 0.0,
        "histogram": histogram,
    }


def limit_words(text: str, limit: int = SUMMARY_MAX_WORDS) -> str:
    """At most `limit` words, cut at a sentence end when there is one in the last third."""
    words = text.split()
    if len(words) <= limit:
        return " ".join(words)
    cut = " ".join(words[:limit])
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if end > len(cut) * 2 // 3:
        return cut[: end + 1]
    return cut.rstrip(",;:") + "…"


def assemble(
    items: list[Item],
    themes: list[dict],
    assignment: dict[str, list[int]],
    findings: list[dict],
    summary: str,
) -> tuple[list[dict], dict, dict, dict]:
    """The stored shapes from per-conversation results and a theme assignment.

    `themes` are dicts with at least a label; `assignment` maps conversation id to indexes in
    `themes`. Themes are numbered t1… largest first (ties by label), so ids are stable for the
    same input; conversations without a theme are grouped under "Other". Also returns
    {index in `themes`: theme id}."""
    members: list[list[str]] = [[] for _ in themes]
    unassigned = []
    for item in items:
        indexes = sorted(set(assignment.get(item.id, ())))
        if not indexes:
            unassigned.append(item.id)
        for index in indexes:
            members[index].append(item.id)
    if unassigned:
        themes = [
            *themes,
            {"label": "Other", "description": "Conversations without a shared theme."},
        ]
        members.append(unassigned)
    order = sorted(
        (i for i in range(len(themes)) if members[i]),
        key=lambda i: (-len(members[i]), themes[i]["label"].lower()),
    )
    total = len(items) or 1
    ids = {old: f"t{new}" for new, old in enumerate(order, 1)}
    out_themes = [
        {
            "id": ids[i],
            "label": themes[i]["label"],
            "description": themes[i].get("description", ""),
            "keywords": themes[i].get("keywords", []),
            "count": len(members[i]),
            "share": round(100 * len(members[i]) / total, 1),
        }
        for i in order
    ]
    groupings = {ids[i]: members[i] for i in order}
    theme_of: dict[str, list[str]] = {}
    for theme_id, conversation_ids in groupings.items():
        for conversation_id in conversation_ids:
            theme_of.setdefault(conversation_id, []).append(theme_id)
    conversations = {
        item.id: {
            "number": item.number,
            "status": item.status,
            "score": round(float(item.result.get("score", 0.0)), 3),
            "label": item.result.get("label") or sentiment_label(item.result.get("score", 0.0)),
            "themes": theme_of.get(item.id, []),
        }
        for item in items
    }
    for finding in findings:
        if "theme_index" in finding:
            finding["theme"] = ids.get(finding.pop("theme_index"), "")
    sentiment = distribution([c["score"] for c in conversations.values()])
    return out_themes, groupings, conversations, sentiment, ids


# --- the local engine ----------------------------------------------------------------------

# Sentences end at . ! ? … and a space, after a CJK full stop, ! or ? (no space), or a line.
SENTENCE = re.compile(r"(?<=[.!?…])\s+|(?<=[\u3002\uff01\uff1f])|\n+")
# Words of letters in any alphabet ("équipe", "Größe"), joined by an apostrophe or a hyphen;
# ASCII-only words cut "l'équipe était géniale" into "quipe", "tait", "g", "niale".
TOKEN = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
QUOTE_WORDS = (6, 45)
QUOTES_KEPT = 6
MAX_THEMES = 8
SILHOUETTE_SAMPLE = 2000
# A refresh places changed conversations into the existing themes while the changes since the
# last clustering stay under this share of the campaign; past it, everything is re-clustered.
UPDATE_FRACTION = 0.1
CENTROID_TERMS = 300
PHRASE_BOOST = 2.0


# Han ideographs, hiragana and katakana: written without spaces between words.
UNSPACED_CHARS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _words(sentence: str) -> int:
    """How many words a sentence has: by spaces, or about one per two characters of Chinese
    or Japanese, which are written without them (not Arabic, Hebrew, Hindi or Korean, which
    have spaces)."""
    return max(len(sentence.split()), len(UNSPACED_CHARS.findall(sentence)) // 2)


def _stopwords() -> frozenset[str]:
    # tap.ai's list (the interviewer's) plus words that carry no theme in answers; not
    # scikit-learn's list, whose import would cost a refresh that never clusters a second.
    from tap.ai import STOPWORDS  # noqa: PLC0415

    extra = """
        [name] [email] name email ai really just lot like also around back came come could
        day days done each else every first get give got however keep last least less made
        many may might much must never next often put rather seem seemed since still take
        than thing things thus together top toward towards upon us use used using via want
        week weeks whereas whether within without yet
    """
    return STOPWORDS | frozenset(extra.split())


class LocalEngine:
    name = "local"
    version = "2"  # 2: words in any alphabet (TOKEN)
    model = "offline-analysis"
    label = "offline analysis"

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: PLC0415

        self.vader = SentimentIntensityAnalyzer()
        self.stopwords = _stopwords()

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}:{self.model}"

    def extract_many(self, conversations: list[ConversationInput], mission: str = ""):
        return [self.extract(c) for c in conversations]

    def extract(self, conversation: ConversationInput) -> tuple[dict, Usage]:
        """Sentiment of the participant's words (VADER compound per message, weighted by
        length), their content words for TF-IDF, and candidate quotes (sentences with the
        message they come from)."""
        scores: list[tuple[float, int]] = []
        terms: list[str] = []
        quotes: list[tuple[float, str, str]] = []
        for message_id, sender, text in conversation.messages:
            if sender != "participant" or not text.strip():
                continue
            compound = self.vader.polarity_scores(text)["compound"]
            scores.append((compound, len(text.split())))
            terms.extend(t for t in TOKEN.findall(text.lower()) if t not in self.stopwords)
            terms.append("|")  # no phrase spans two messages
            for sentence in SENTENCE.split(text):
                words = _words(sentence)
                if QUOTE_WORDS[0] <= words <= QUOTE_WORDS[1]:
                    strength = abs(self.vader.polarity_scores(sentence)["compound"])
                    # Strong, mid-length sentences make the best quotes.
                    quotes.append((strength + min(words, 25) / 50, message_id, sentence.strip()))
        weight = sum(w for _s, w in scores) or 1
        score = sum(s * w for s, w in scores) / weight if scores else 0.0
        quotes.sort(key=lambda q: (-q[0], q[1], q[2]))
        return (
            {
                "score": round(score, 4),
                "label": sentiment_label(score),
                "terms": " ".join(terms),
                "quotes": [
                    {"message_id": m, "text": t, "strength": round(s, 3)}
                    for s, m, t in quotes[:QUOTES_KEPT]
                ],
            },
            Usage(),
        )

    def synthesise(self, items: list[Item], context: dict) -> tuple[Result, Usage]:
        """Themes by clustering the participants' words: TF-IDF over words and two-word
        phrases, reduced with LSA, k-means with k chosen by silhouette (fixed seeds, so the
        same input gives the same themes). Labels are each cluster's most distinctive
        phrases; findings are the largest themes with the quotes nearest their centre."""
        if not items:
            return Result(
                [], {}, {}, [], distribution([]), "No conversations to analyse yet."
            ), Usage()
        labels, vectors, centroids, features, weights, idf = self._cluster(items)
        k = int(labels.max()) + 1 if len(labels) else 0
        themes = []
        for cluster in range(k):
            keywords = self._keywords(cluster, labels, weights, features)
            themes.append(
                {
                    "label": _title(keywords),
                    "keywords": keywords[:6],
                    "description": "Key phrases: " + ", ".join(keywords[:6]) + "."
                    if keywords
                    else "",
                }
            )
        assignment = {item.id: [int(labels[i])] for i, item in enumerate(items)}
        quotes = self._representative_quotes(items, labels, vectors, centroids, themes)
        findings = [
            {"title": themes[c]["label"], "quotes": quotes[c][:3], "theme_index": c}
            for c in range(k)
        ]
        result = self._finish(items, themes, assignment, findings)
        result.state = {
            "version": 1,
            "base": len(items),
            "drift": 0,
            **self._term_centroids(labels, weights, features, idf, result.extra["ids"]),
        }
        return result, Usage()

    # -- updating a result in place ------------------------------------------------------

    def can_update(self, previous: dict, *, total: int, changed: int) -> bool:
        """A few changed conversations are placed into the existing themes (nearest term
        centroid) instead of re-clustering everything; once the changes since the last full
        clustering pass UPDATE_FRACTION of the campaign, it is clustered again."""
        state = previous.get("engine_state") or {}
        return (
            previous.get("engine") == self.name
            and previous.get("engine_version") == self.version
            and bool(state.get("centroids"))
            and state.get("drift", 0) + changed <= UPDATE_FRACTION * max(total, 1)
        )

    def update(self, items: list[Item], previous: dict, context: dict) -> tuple[Result, Usage]:
        """`items` carry a result only for changed conversations; the others keep their
        sentiment and themes from `previous`. Raises NeedsFullRun when that is not possible."""
        state = previous["engine_state"]
        before = previous.get("conversations") or {}
        kept_themes = [t for t in previous.get("themes", []) if t["id"] in state["centroids"]]
        index = {t["id"]: i for i, t in enumerate(kept_themes)}
        centroids = [state["centroids"][t["id"]] for t in kept_themes]
        idf = state["idf"]
        assignment: dict[str, list[int]] = {}
        full: list[Item] = []
        changed: set[str] = set()
        for item in items:
            if item.result is None:
                old = before.get(item.id)
                if old is None:
                    raise NeedsFullRun(item.id)
                result = {"score": old["score"], "label": old["label"]}
                assignment[item.id] = [index[t] for t in old.get("themes", []) if t in index]
            else:
                changed.add(item.id)
                result = item.result
                best = _nearest(result.get("terms", ""), idf, centroids)
                assignment[item.id] = [best] if best is not None else []
            full.append(Item(item.id, item.number, item.status, result))
        included = {i.id for i in full}
        findings = []
        for finding in previous.get("key_findings", []):
            if finding.get("theme") not in index:
                continue
            quotes = [
                q
                for q in finding.get("quotes", [])
                if q["conversation_id"] in included and q["conversation_id"] not in changed
            ]
            findings.append(
                {
                    "title": finding["title"],
                    "quotes": quotes,
                    "theme_index": index[finding["theme"]],
                }
            )
        themes = [{k: t.get(k) for k in ("label", "keywords", "description")} for t in kept_themes]
        result = self._finish(full, themes, assignment, findings)
        ids = result.extra["ids"]
        result.state = {
            **state,
            "drift": state.get("drift", 0) + len(changed),
            "centroids": {ids[i]: centroids[i] for i in range(len(kept_themes)) if i in ids},
        }
        result.extra["updated"] = True
        return result, Usage()

    def _finish(self, items, themes, assignment, findings) -> Result:
        """Findings for the largest themes (with their size, share and tone), the extractive
        summary, and the stored shapes."""
        total = len(items)
        members: dict[int, list[Item]] = {}
        for item in items:
            for i in assignment.get(item.id, []):
                members.setdefault(i, []).append(item)
        by_size = sorted(members, key=lambda i: (-len(members[i]), themes[i]["label"]))
        chosen = []
        quotes_of = {f["theme_index"]: f["quotes"] for f in findings}
        for i in by_size[:5]:
            size = len(members[i])
            if size < 2 and total >= 10:
                continue
            mean = sum(m.result.get("score", 0.0) for m in members[i]) / size
            chosen.append(
                {
                    "title": themes[i]["label"],
                    "detail": (
                        f"{size} of {total} conversations ({round(100 * size / total)}%) talk "
                        f"about {', '.join((themes[i].get('keywords') or [])[:3]) or 'this'}; "
                        f"their tone is mostly {sentiment_label(mean)} (mean {mean:+.2f})."
                    ),
                    "quotes": quotes_of.get(i, [])[:3],
                    "theme_index": i,
                }
            )
        summary = _summary(
            items,
            [
                {
                    "label": themes[i]["label"],
                    "keywords": themes[i].get("keywords") or [],
                    "count": len(members[i]),
                    "quotes": quotes_of.get(i, []),
                }
                for i in by_size[:4]
            ],
        )
        out_themes, groupings, conversations, sentiment, ids = assemble(
            items, themes, assignment, chosen, summary
        )
        return Result(
            out_themes,
            groupings,
            conversations,
            chosen,
            sentiment,
            summary,
            model=self.model,
            extra={"ids": ids},
        )

    @staticmethod
    def _term_centroids(labels, weights, features, idf_values, ids) -> dict:
        """Per theme, its mean TF-IDF row cut to its CENTROID_TERMS heaviest terms (unit
        length), and the idf of those terms: enough to place a new conversation later."""
        import numpy as np  # noqa: PLC0415

        if weights is None or not len(features):
            return {"idf": {}, "centroids": {}}
        centroids: dict[str, dict[str, float]] = {}
        used: set[int] = set()
        for cluster, theme_id in ids.items():
            inside = labels == cluster
            if not inside.any():
                continue
            mean = np.asarray(weights[inside].mean(axis=0)).ravel()
            top = [i for i in mean.argsort()[::-1][:CENTROID_TERMS] if mean[i] > 0]
            norm = float(np.sqrt(sum(mean[i] ** 2 for i in top))) or 1.0
            centroids[theme_id] = {str(features[i]): round(float(mean[i]) / norm, 5) for i in top}
            used.update(top)
        idf = {str(features[i]): round(float(idf_values[i]), 4) for i in sorted(used)}
        return {"idf": idf, "centroids": centroids}

    # -- clustering ---------------------------------------------------------------------

    def _cluster(self, items: list[Item]):
        import numpy as np  # noqa: PLC0415
        from sklearn.cluster import KMeans  # noqa: PLC0415
        from sklearn.decomposition import TruncatedSVD  # noqa: PLC0415
        from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
        from sklearn.metrics import silhouette_score  # noqa: PLC0415
        from sklearn.preprocessing import normalize  # noqa: PLC0415

        docs = [item.result.get("terms", "") for item in items]
        n = len(docs)
        vectorizer = TfidfVectorizer(
            analyzer=_phrases,
            min_df=2 if n >= 20 else 1,
            max_df=0.6 if n >= 20 else 1.0,
            max_features=20_000,
            sublinear_tf=True,
            dtype=np.float32,
        )
        try:
            weights = vectorizer.fit_transform(docs)
        except ValueError:  # every document empty (only stop words)
            zeros = np.zeros(n, dtype=int)
            return zeros, np.zeros((n, 1)), np.zeros((1, 1)), np.array([]), None, None
        features = vectorizer.get_feature_names_out()
        idf = vectorizer.idf_
        if n < 4 or weights.shape[1] < 3:
            labels = np.zeros(n, dtype=int)
            vectors = normalize(weights.toarray())
            return labels, vectors, vectors.mean(axis=0, keepdims=True), features, weights, idf
        components = max(2, min(100, weights.shape[1] - 1, n - 1))
        svd = TruncatedSVD(n_components=components, random_state=0)
        vectors = normalize(svd.fit_transform(weights))
        best = None
        rng = np.random.RandomState(0)
        sample = rng.choice(n, size=min(n, SILHOUETTE_SAMPLE), replace=False)
        for k in range(2, min(MAX_THEMES, n - 1) + 1):
            model = KMeans(n_clusters=k, n_init=4, random_state=0).fit(vectors)
            labels = model.labels_
            if len(set(labels[sample])) < 2:
                continue
            score = silhouette_score(vectors[sample], labels[sample], metric="cosine")
            # A slightly better score is not worth an extra theme: prefer fewer on near ties.
            if best is None or score > best[0] + 0.01:
                best = (score, labels, model.cluster_centers_)
        if best is None:
            labels = np.zeros(n, dtype=int)
            return labels, vectors, vectors.mean(axis=0, keepdims=True), features, weights, idf
        return best[1], vectors, best[2], features, weights, idf

    @staticmethod
    def _keywords(cluster, labels, weights, features) -> list[str]:
        """The cluster's phrases by how much more weight they carry inside it than overall.
        Two-word phrases count double (a phrase says more than its words), and a phrase
        takes the place of the single words it contains."""
        import numpy as np  # noqa: PLC0415

        if weights is None or not len(features):
            return []
        inside = labels == cluster
        mean_in = weights[inside].mean(axis=0).A1
        mean_all = weights.mean(axis=0).A1
        is_phrase = np.fromiter((" " in f for f in features), dtype=bool, count=len(features))
        distinct = (mean_in - mean_all) * np.where(is_phrase, PHRASE_BOOST, 1.0)
        order = distinct.argsort(kind="stable")[::-1][:60]
        chosen: list[str] = []
        for index in order:
            if distinct[index] <= 0 or len(chosen) == 8:
                break
            term = str(features[index])
            words = term.split()
            if any(set(words) <= set(c.split()) for c in chosen):
                continue  # a word (or phrase) already covered by a chosen phrase
            chosen = [c for c in chosen if not (" " not in c and c in words)]
            chosen.append(term)
        return chosen

    @staticmethod
    def _representative_quotes(items, labels, vectors, centroids, themes) -> list[list[dict]]:
        """Per cluster, quotes from the conversations nearest its centre, one per
        conversation, preferring sentences that use the cluster's key phrases."""
        import numpy as np  # noqa: PLC0415

        out = []
        for cluster in range(len(themes)):
            indexes = np.flatnonzero(labels == cluster)
            if not len(indexes):
                out.append([])
                continue
            centre = centroids[cluster] if cluster < len(centroids) else vectors[indexes].mean(0)
            closeness = vectors[indexes] @ centre
            ranked = indexes[np.argsort(-closeness, kind="stable")]
            words = set(" ".join(themes[cluster]["keywords"]).split())
            quotes = []
            for index in ranked[:50]:
                item = items[int(index)]
                candidates = item.result.get("quotes", [])
                if not candidates:
                    continue
                best = max(
                    candidates,
                    key=lambda q: (
                        len(words & set(TOKEN.findall(q["text"].lower()))),
                        q.get("strength", 0),
                    ),
                )
                quotes.append(
                    {
                        "message_id": best["message_id"],
                        "conversation_id": item.id,
                        "number": item.number,
                        "text": best["text"],
                    }
                )
                if len(quotes) == 3:
                    break
            out.append(quotes)
        return out


class NeedsFullRun(Exception):
    """An in-place update cannot place every conversation: cluster again."""


def _nearest(terms: str, idf: dict, centroids: list[dict]) -> int | None:
    """The index of the centroid closest (cosine) to a conversation's sublinear TF-IDF."""
    counts: dict[str, int] = {}
    for phrase in _phrases(terms):
        if phrase in idf:
            counts[phrase] = counts.get(phrase, 0) + 1
    if not counts:
        return None
    vector = {t: (1 + math.log(n)) * idf[t] for t, n in counts.items()}
    best, best_score = None, 0.0
    for i, centroid in enumerate(centroids):
        score = sum(w * centroid.get(t, 0.0) for t, w in vector.items())
        if score > best_score:
            best, best_score = i, score
    return best


def _summary(items: list[Item], top: list[dict]) -> str:
    """Extractive: the figures, the largest themes, and one participant sentence for each."""
    total = len(items)
    completed = sum(1 for i in items if i.status == "completed")
    scores = [i.result.get("score", 0.0) for i in items]
    dist = distribution(scores)["counts"]

    def pct(n):
        return round(100 * n / total)

    mood = sentiment_label(sum(scores) / total)
    lines = [
        f"{total} conversation{'s' if total != 1 else ''} analysed ({completed} completed).",
        f"Overall the tone is {mood}: {pct(dist['positive'])}% positive, "
        f"{pct(dist['neutral'])}% neutral and {pct(dist['negative'])}% negative.",
    ]
    named = [t for t in top if t["keywords"]]
    if named:
        lines.append(
            "The main themes are "
            + _join([f"{t['label'].lower()} ({pct(t['count'])}%)" for t in named])
            + "."
        )
    for theme in named:
        if theme["quotes"]:
            lines.append(
                f"On {theme['label'].lower()}, one participant said: “{theme['quotes'][0]['text']}”"
            )
    return limit_words(" ".join(lines))


def _phrases(doc: str) -> list[str]:
    """Words and two-word phrases of a stored term list; "|" separates messages."""
    out: list[str] = []
    for part in doc.split("|"):
        words = part.split()
        out.extend(words)
        out.extend(f"{a} {b}" for a, b in itertools.pairwise(words) if a != b)
    return out


def _title(keywords: list[str]) -> str:
    if not keywords:
        return "General remarks"
    first = keywords[0]
    second = next((k for k in keywords[1:] if not set(k.split()) & set(first.split())), "")
    label = f"{first} / {second}" if second else first
    return label[:1].upper() + label[1:]


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def cost_usd(usage: Usage, *, price_in: float, price_out: float) -> float:
    """Estimated cost: cache reads at a tenth of the input price, cache writes at 1.25 times."""
    plain_in = max(0, usage.tokens_in)
    total = (
        plain_in * price_in
        + usage.cache_read * price_in * 0.1
        + usage.cache_write * price_in * 1.25
        + usage.tokens_out * price_out
    ) / 1_000_000
    return math.floor(total * 10_000 + 0.5) / 10_000
