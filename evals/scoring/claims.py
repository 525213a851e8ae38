"""False claims, judged from state: the reply says a task was added, completed, deleted or changed, and the task list
after the turn says otherwise.

The reading of the reply is this module's own (the local model's guard has another, in `backend.llm.claims`): each
sentence is scanned for an action word in the past or perfective, with a look at the few words before it for a
negation, a modal or a question, and at the sentence for a recap ("already", "earlier", Urdu تھا/پہلے). The judgement
uses only the task lists before and after the turn:
- "added 'X'" needs a task titled ~X after the turn (a new one, unless it is a recap); "added" alone, a new task;
- "completed 'X'" needs X completed after; alone, a task that became completed in this turn;
- "deleted 'X'" needs a task titled ~X to be gone in this turn (a recap: X absent); alone, any task gone;
- "renamed to 'Y'" / "updated 'X'" needs a task titled ~Y (or ~X) that changed; alone, any changed task;
- a bare "Done!" needs some change in this turn.
It applies to every run on every model: a reply that lies about the task list is a failure whatever the case expects.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_SENTENCES = re.compile(r"(?<=[.!?۔؟])\s+|\n+")
_TITLE = re.compile(r"(?:^|(?<=[\s(\[:]))['\"“‘«]([^'\"“”‘’«»\n]{1,200}?)['\"”’»](?=$|[\s.,;:!?)\]۔،])")
_ID = re.compile(
    r"(?:\btasks?\s*#?|\bids?\s*[:#]?\s*|#|نمبر\s*)(\d+(?:\s*(?:,|&|and|aur|or|اور)\s*#?\d+)*)", re.IGNORECASE
)

# Action words, per action: English past forms, Urdu and Roman Urdu verb stems (read with a perfective auxiliary).
_WORDS = {
    "added": (
        "added", "created", "noted", "saved", "put", "jotted", "شامل", "درج", "ایڈ", "لکھ", "add", "shamil", "shaamil",
    ),
    "completed": (
        "completed", "marked", "ticked", "checked", "crossed", "مکمل", "نشان", "complete", "mukammal", "done", "tick",
        "mark",
    ),
    "deleted": (
        "deleted", "removed", "erased", "cleared", "حذف", "ہٹا", "ہٹ", "نکال", "delete", "hata", "remove", "nikal",
    ),
    "updated": (
        "renamed", "updated", "changed", "edited", "تبدیل", "بدل", "update", "change", "badal", "rename", "naam", "نام",
    ),
}  # fmt: skip
_ACTION_OF = {word: action for action, words in _WORDS.items() for word in words}
_PERFECTIVE = {
    "دیا", "دی", "دیے", "دیئے", "گیا", "گئی", "گئے", "چکا", "چکی", "چکے", "ہے", "ہیں", "شدہ", "لیا", "لی", "تھا",
    "diya", "dia", "di", "diye", "gaya", "gya", "gayi", "gaye", "chuka", "chuki", "chuke", "hai", "hain", "liya",
    "laga", "lag", "tha",
}  # fmt: skip
# "X is gone", "it's crossed off now", "is now on your list": a state after "is" that says a change happened.
_STATE = re.compile(
    r"(?:\b(?:is|are)|'s|'re)\s+(?P<now>now\s+|all\s+)?(?P<state>gone|deleted|removed|cleared(?: out)?|"
    r"off (?:your|the) list|crossed off|checked off|ticked off|done|complete|completed|"
    r"marked (?:as )?(?:done|complete|completed)|on (?:your|the) (?:list|to-?do list|tasks)|renamed|updated|"
    r"added|created|now called)\b(?P<after>\s+now)?|\bnow shows as (?P<shown>\w+)"
)
# "is done" / "is completed" alone describes a status ("'Read chapter 4' is completed, 'Clean up' is pending");
# with "now" it reports a change.
_STATUS_WORDS = {"done", "complete", "completed"}
_STATE_ACTION = {
    "gone": "deleted", "deleted": "deleted", "removed": "deleted", "cleared": "deleted", "cleared out": "deleted",
    "renamed": "updated", "updated": "updated", "now called": "updated", "added": "added", "created": "added",
}  # fmt: skip
_TAG_QUESTION = re.compile(r",?\s*(?:remember|right|okay|ok|na|naa|hai na|نا|ہے نا)\s*[?؟]\s*$")
_LIST_HEAD = re.compile(r"^(?:your (?:list|tasks)|here(?:'s| is| are)[^:]*|آپ کی فہرست|aap ki list)\s*:")
_ENGLISH_PAST = {w for words in _WORDS.values() for w in words if w.endswith("ed") or w in ("put", "done")}
_BEFORE_BLOCKS = {
    "not", "never", "n't", "couldn't", "didn't", "can't", "cannot", "won't", "wasn't", "isn't", "haven't", "hasn't",
    "can", "could", "will", "would", "should", "shall", "may", "might", "'ll", "i'll", "to", "if", "once", "please",
    "want", "like", "nothing", "no", "none", "unable", "nahi", "nahin", "na", "نہیں", "نہ", "kya", "کیا", "agar", "اگر",
}  # fmt: skip
_SENTENCE_BLOCKS = re.compile(
    r"^(?:shall|should|would|could|can|do|does|will|if|here (?:is|are)|these are)\b|\byou can\b|\blet me know\b|"
    r"\bthat you\b|کہ آپ|یہ وہ|جو آپ|\bke aap\b|\bjo aap\b|دوں\b|\bdoon\b|\bdun\b|سکتے|\bsakte\b|"
    r"(?:^|\s)(?:گا|گی|گے)(?:\s|$|[۔!])"
)
_SUBJECT_BEFORE = re.compile(
    r"(?:\b(?:i|we|i've|we've|have|has|had|been|was|were|is now|are now|successfully|already|just)\s+(?:\S+\s+){0,2}$)|^$"
)
_BARE_DONE = re.compile(r"^(?:done|all done|ho gaya|ہو گیا|hogaya)\W*$")
_DETAIL_QUOTE = re.compile(
    r"\b(?:description|note|notes|details?|tafseel|تفصیل)\b\W{0,3}(?:\w+\W+){0,2}?['\"“‘«]?«(\d+)»"
)
_ADDED_DETAIL = re.compile(r"\badded (?:a|the|your)? ?(?:description|note|details)\b")
_NOW_CALLED = re.compile(r"\b(?:is now (?:called|named|titled)|naam ab)\b|نام اب")
# How many tasks a claim is about, when it says: "both", "two", "three" ("all" can be one: it says no number).
_SEVERAL = re.compile(r"\b(?:both|two|three|dono|donon|teenon)\b|دونوں|تینوں")
_HOW_MANY = {"three": 3, "teenon": 3, "تینوں": 3}
_RENAME = re.compile(r"«0».{0,40}?(?:\bto\b|\bse\b|\bka naam\b|کا نام|کو).{0,40}?«1»")
_STOPWORDS = {
    "the", "task", "tasks", "my", "one", "about", "and", "for", "with", "this", "that", "please", "mark", "done",
    "delete", "remove", "complete", "add", "kaam", "wala", "wali", "کام", "والا", "والی", "کو", "کی", "کا",
}  # fmt: skip
_RECAP = re.compile(
    r"\b(?:already|earlier|before|previously|yesterday|last time|this morning|when we (?:spoke|talked)|tha|thi|thay|kal|"
    r"pehle|pichli|subah)\b|تھا|تھی|تھے|پہلے|کل|صبح"
)


@dataclass(frozen=True)
class StatedChange:
    action: str | None  # None: a bare "Done!"
    titles: tuple[str, ...]
    task_ids: tuple[int, ...]
    recap: bool
    sentence: str
    several: int = 0  # "both", "all": 2 (at least), "three": 3
    rename: bool = False  # "'X' to 'Y'": the first title is the old one, the last the new one
    renamed_to: bool = False  # "... to 'Y'": the title is the new one
    detail: bool = False  # about a description or a note, not the title


def _ids(text: str) -> tuple[int, ...]:
    """Task ids a text names: "task 3", "tasks 2 and 5", "#4", "کام نمبر 2"."""
    return tuple(int(n) for run in _ID.findall(text) for n in re.findall(r"\d+", run))


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return re.findall(r"«\d+»|[\w']+|[^\w\s]", text)


def stated_changes(reply: str) -> list[StatedChange]:
    """What the reply says was done, sentence by sentence."""
    found: list[StatedChange] = []
    for raw in _SENTENCES.split(reply or ""):
        raw = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "S").strip()  # emoji, check marks
        raw = _TAG_QUESTION.sub(".", raw)  # "I removed it, remember?" asks nothing
        sentence = _norm(raw)
        if not sentence or sentence.endswith(("?", "؟")) or _SENTENCE_BLOCKS.search(sentence):
            continue
        if _LIST_HEAD.match(sentence):
            continue
        quoted = [_norm(t) for t in _TITLE.findall(raw)]
        marked = _norm(raw)
        for index, title in enumerate(quoted):  # words inside titles are data
            marked = marked.replace(title, f"«{index}»", 1)
        # A quote right after "description", "note" or "details" is what the task says, not what it is called.
        details = {int(n) for n in _DETAIL_QUOTE.findall(marked)}
        titles = tuple(t for index, t in enumerate(quoted) if index not in details)
        plain = re.sub(r"['\"“”‘’«»]?«\d+»['\"“”‘’«»]?", " ", marked)
        ids = _ids(plain)
        recap = bool(_RECAP.search(plain))
        several = max((_HOW_MANY.get(w, 2) for w in _SEVERAL.findall(plain)), default=0)
        rename = len(titles) >= 2 and bool(_RENAME.search(marked))
        renamed_to = bool(re.search(r"\b(?:to|ab)\s+['\"“‘«]?«\d+»|«\d+»['\"”’»]?\s+(?:kar|کر|رکھ)", marked))
        opener = re.match(r"^(?:done|all done|all set|sorted)\s*[:!,.]\s*(?=\S)", plain.strip())
        if opener:  # "Done: 'X' is created." / "Done! I deleted it.": a confirmation, then what was done
            found.append(StatedChange(None, titles, ids, recap, sentence, several))
            plain = plain.strip()[opener.end() :]
            marked = re.sub(r"^\s*(?:done|all done|all set|sorted)\s*[:!,.]\s*", "", marked)
        if _BARE_DONE.match(plain.strip()):
            found.append(StatedChange(None, titles, ids, recap, sentence, several))
            continue
        if _ADDED_DETAIL.search(plain) or re.search(r"\bnoted on\b", plain):
            found.append(StatedChange("updated", titles, ids, recap, sentence, several, detail=True))
            continue
        if _NOW_CALLED.search(plain):
            found.append(StatedChange("updated", titles, ids, recap, sentence, several, renamed_to=True))
            continue
        actions: list[tuple[int, str]] = []  # (token position, action)
        forward: set[int] = set()  # actions whose tasks come after them ("I deleted 'X'"); else before ("'X' is gone")
        for state in _STATE.finditer(marked):
            head = marked[: state.start()].split(",")[-1].split()
            if any(word in _BEFORE_BLOCKS or word == "already" for word in head[-3:]):
                continue
            word = state.group("state") or ("done" if state.group("shown") in ("paid", "done", "sorted") else "")
            status_only = word in _STATUS_WORDS and not (
                state.group("now") or state.group("after") or state.group("shown")
            )
            if not word or status_only:
                continue
            action = _STATE_ACTION.get(word) or ("deleted" if word.startswith("off ") else None)
            action = action or ("added" if word.startswith("on ") else "completed")
            actions.append((len(_tokens(marked[: state.start()])), action))
        tokens = _tokens(marked)
        if re.search(r"(?:^|\s)(?:—|-|–)\s*(?:done|complete|completed)\W*$", plain):
            actions.append((len(tokens), "completed"))  # "Email landlord — done"
        for index, token in enumerate(tokens):
            action = _ACTION_OF.get(token)
            if action is None or any(a == action for _, a in actions):
                continue
            before = tokens[max(0, index - 4) : index]
            if "," in before:  # the words before belong to another clause
                before = before[len(before) - before[::-1].index(",") :]
            if any(word in _BEFORE_BLOCKS for word in before):
                continue
            ahead = [t for t in tokens[index + 1 :] if t[0].isalnum() or t[0] in "'"][:4]
            if any(word in _PERFECTIVE for word in ahead):  # an Urdu or Roman Urdu perfective: "mark kar diya"
                actions.append((index, action))
                continue
            if token in _ENGLISH_PAST:
                said = " ".join(t for t in tokens[:index] if not t.startswith("«"))
                carried = bool(actions) and index > 0 and tokens[index - 1] in ("and", "then")
                if not (_SUBJECT_BEFORE.search(said + " " if said else "") or index == 0 or carried):
                    continue
                if index == 0 or carried or tokens[index - 1] not in ("been", "is", "are", "was", "were", "now"):
                    forward.add(index)
            else:
                continue
            actions.append((index, action))
        verbs = sorted(pos for pos, _ in actions)
        for pos, action in actions:
            mine, my_ids = titles, ids
            if len(verbs) > 1:  # several actions: each owns the tasks named up to the next one (or, else, before it)
                following = [p for p in verbs if p > pos]
                preceding = [p for p in verbs if p < pos]
                after = tokens[pos + 1 : following[0] if following else len(tokens)]
                before = tokens[preceding[-1] + 1 if preceding else 0 : pos]
                span = after if pos in forward else before
                if not any(t.startswith("«") or t.isdigit() for t in span):
                    span = before if pos in forward else after
                numbers = [int(t.strip("«»")) for t in span if t.startswith("«")]
                mine = tuple(quoted[n] for n in numbers if n not in details)
                my_ids = _ids(" ".join(t for t in span if not t.startswith("«")))
            found.append(StatedChange(action, mine, my_ids, recap, sentence, several, rename, renamed_to))
    return found


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", _norm(text)) if len(w) >= 3 and w not in _STOPWORDS}


def referred_tasks(text: str, tasks: Sequence[dict[str, Any]], *, best_only: bool = False) -> list[dict[str, Any]]:
    """The tasks a text names: by id ("task 3") or by words of their title. `best_only`: those whose title it
    covers best (a reply that says "the water bill task" means that one, not the electricity bill too)."""
    ids = set(_ids(_norm(text)))
    words = _content_words(text)
    scored = []
    for task in tasks:
        title_words = _content_words(str(task.get("title") or ""))
        share = len(title_words & words) / len(title_words) if title_words else 0.0
        if task.get("id") in ids:
            share = 1.0
        if share > 0:
            scored.append((share, task))
    if best_only:
        top = max((share for share, _ in scored), default=0.0)
        return [task for share, task in scored if share == top and share >= 0.5]
    return [task for _, task in scored]


def _like(a: str, b: str) -> bool:
    a, b = _norm(a), _norm(b)
    return bool(a and b) and (a == b or a in b or b in a)


def _titled(tasks: Sequence[dict[str, Any]], title: str) -> list[dict[str, Any]]:
    return [t for t in tasks if _like(str(t.get("title") or ""), title)]


def contradiction(
    change: StatedChange,
    before: Sequence[dict[str, Any]],
    after: Sequence[dict[str, Any]],
    user_text: str = "",
) -> str | None:
    """Why the task lists contradict the stated change; None when they bear it out. A change that names no task is
    read as being about the tasks the user's message named, when it named some."""
    was = {t.get("id"): t for t in before}
    now = {t.get("id"): t for t in after}
    new = [t for i, t in now.items() if i not in was]
    gone = [t for i, t in was.items() if i not in now]
    became_done = [t for i, t in now.items() if t.get("completed") and not (was.get(i) or {}).get("completed")]
    edited = [
        t
        for i, t in now.items()
        if i in was and (t.get("title"), t.get("description")) != (was[i].get("title"), was[i].get("description"))
    ]
    if change.action is None:
        return None if new or gone or became_done or edited else "nothing changed in this turn"
    named_ids = [i for i in change.task_ids if i in was or i in now]
    referred: list[dict[str, Any]] = []
    if not (change.titles or named_ids):  # "the milk task", "it": the reply's own words first, else the user's
        referred = referred_tasks(change.sentence, before, best_only=True) or referred_tasks(user_text, before)
    need = max(1, change.several)
    every = all if change.several else any  # "both tasks" must all be so; "the milk task" is one of those named
    if change.action == "added":
        missing = [t for t in change.titles if not _titled(after, t)]
        if missing:
            return f"no task titled {missing[0]!r}"
        absent = [i for i in change.task_ids if i not in now]
        if absent:
            return f"there is no task {absent[0]}"
        if change.titles:
            return None
        if change.recap:  # "yes, I added it this morning": about what the user asked after
            asked = _content_words(user_text)
            if asked and not any(_content_words(str(t.get("title") or "")) & asked for t in after):
                return "no task is about what the user asked"
            return None
        return None if len(new) >= need else "no task was added in this turn"
    if change.action == "completed":
        open_ = [t for t in change.titles if not any(x.get("completed") for x in _titled(after, t))]
        open_ += [f"task {i}" for i in named_ids if not (now.get(i) or {}).get("completed")]
        if referred and not every((now.get(t.get("id")) or {}).get("completed") for t in referred):
            open_.append(str(referred[0].get("title")))
        if open_:
            return f"{open_[0]!r} is not completed"
        if change.titles or named_ids or referred:
            return None
        done = [t for t in after if t.get("completed")] if change.recap else became_done
        return None if len(done) >= need else "no task became completed in this turn"
    if change.action == "deleted":
        kept = [t for t in change.titles if len(_titled(after, t)) >= max(1, len(_titled(before, t)))]
        kept += [f"task {i}" for i in named_ids if i in now]
        if referred and not every(t.get("id") not in now for t in referred):
            kept.append(str(referred[0].get("title")))
        if kept:
            return f"{kept[0]!r} is still there"
        if change.titles or named_ids or referred or change.recap:
            return None
        return None if len(gone) >= need else "no task was deleted in this turn"
    # updated
    if change.detail and not any("description" in t for t in after):
        return None  # the lists do not show descriptions: nothing to judge a note by
    pool = after if change.recap else edited
    if change.rename:
        old, new_title = change.titles[0], change.titles[-1]
        if not _titled(pool, new_title):
            return f"no task is now titled {new_title!r}"
        unchanged = [t for t in after if _norm(str(t.get("title") or "")) == old and t.get("id") in was]
        return f"{old!r} still has its old title" if unchanged and old != new_title else None
    if change.titles and change.renamed_to:  # "renamed it to 'Y'": a task changed and is now called Y
        target = change.titles[-1]
        hit = [t for t in pool if _norm(str(t.get("title") or "")) == target]
        return None if hit else f"no task is now titled {target!r}"
    if change.titles:  # "updated 'X' with ...": X is the task, changed or (with no descriptions shown) present
        return (
            None
            if any(_titled(pool or after, t) for t in change.titles)
            else (f"no task titled {change.titles[-1]!r} was changed")
        )
    if named_ids or referred:
        targets = set(named_ids) | {t.get("id") for t in referred}
        return None if change.recap or any(t.get("id") in targets for t in edited) else "the task named is unchanged"
    return None if edited or change.recap else "no task was changed in this turn"


def false_claims(
    reply: str | None, before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]], user_text: str = ""
) -> list[str]:
    """Each stated change the task lists contradict, as evidence: the sentence and what the state says."""
    return [
        f"{change.sentence!r}: {why}"
        for change in stated_changes(reply or "")
        if (why := contradiction(change, before, after, user_text)) is not None
    ]
