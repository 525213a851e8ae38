"""What a reply says was done, and whether the turn's calls back it: the local model's honesty guard.

A small model often answers "mark it done" with "The task has been marked as completed." and runs no tool, or says
it completed "Pay rent" after completing another task. The guard (`backend.llm.local_server`) reads the reply clause
by clause — English, Urdu (Nastaliq) and Roman Urdu — and compares each claim with the calls that succeeded in the
turn: the action, the task named (a quoted title or "task 3") and how many ("both"). Offers ("shall I add it?"),
questions, negations ("nothing was deleted"), plans ("I'll add it"), instructions ("you can delete it"), lists of
tasks by status ("your completed tasks: ...") and the user's own news ("great that you finished it!") are not
claims; a recap of an earlier turn's call ("I added it earlier") is a claim that the earlier call backs.

The eval scorer judges claims against the task list with a detector of its own (`evals.scoring.claims`), so the
guard never grades itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Action = Literal["added", "completed", "deleted", "updated"]
ACTIONS: tuple[Action, ...] = ("added", "completed", "deleted", "updated")
ACTION_OF_TOOL: dict[str, Action] = {
    "add_task": "added",
    "complete_task": "completed",
    "delete_task": "deleted",
    "update_task": "updated",
}


@dataclass(frozen=True)
class DoneCall:
    """A call that succeeded: what it did, to which task."""

    action: Action
    title: str = ""
    task_id: int | None = None
    old_title: str = ""  # an update's title before it, when the turn's task list showed it


@dataclass(frozen=True)
class Claim:
    """One clause's assertion that something was done. `action` None: a bare "Done!" (whatever was asked)."""

    action: Action | None
    titles: tuple[str, ...] = ()
    task_ids: tuple[int, ...] = ()
    several: int = 0  # "both": 2, "three": 3, "all": 2 (at least): how many tasks
    recap: bool = False  # "earlier", "already", "yesterday", pluperfect: about a past turn


# A quoted title: the quote opens after a space or a bracket (not the apostrophe of "I've") and closes before one.
_QUOTED = re.compile(r"(?<![\w])['\"“‘«]([^'\"“”‘’«»\n]{1,200}?)['\"”’»](?![\w])")
_SENTENCE_END = re.compile(r"(?<=[.!?؟۔])\s+|\n+")
# Clause breaks; "and" only when a new clause follows ("added 'A' and 'B'" is one claim about two tasks). A clause
# after "and"/"then" carries its subject on ("I found it and marked it done"); one after a dash or a colon does not.
_CLAUSE = re.compile(r"(\s*[,;:،–—]\s*|\s+(?:and|but|so|then|while|aur|lekin|magar|par|اور|لیکن|مگر|پر)\s+(?!\s*«))")
_URDU_SCRIPT = re.compile(r"[\u0600-\u06ff]")
_TASK_ID = re.compile(r"(?:\btask|\bid|#|کام نمبر|نمبر)\s*#?\s*(\d+)")
_SEVERAL = re.compile(
    r"\b(?:both|all|two|three|four|each|dono|donon|teeno|teenon|sab|saare|sare|tamam)\b|دونوں|تینوں|سب|سارے|تمام"
)
_COUNTS = {
    "both": 2,
    "two": 2,
    "dono": 2,
    "donon": 2,
    "دونوں": 2,
    "three": 3,
    "teeno": 3,
    "teenon": 3,
    "تینوں": 3,
    "four": 4,
}
_RECAP = re.compile(
    r"\b(?:already|earlier|before|previously|yesterday|last time|this morning|earlier today|when we (?:spoke|talked)|"
    r"as (?:i )?(?:said|mentioned)|had|pehle|pahle|pehlay|kal|pichli|pichhli|subah|tha|thi|thay|the)\b|"
    r"پہلے|پچھلی|کل|صبح|تھا|تھی|تھے"
)

# ---------------------------------------------------------------- English
_EN_VERBS: dict[Action, str] = {
    "added": r"added|created|put|noted(?: down)?(?! on)|saved|jotted(?: down)?|scheduled|included",
    "completed": r"completed|marked|checked(?: off)?|ticked(?: off)?|crossed(?: off)?|finished|closed|ticked",
    "deleted": r"deleted|removed|erased|cleared|dropped|got rid of|taken off",
    "updated": r"renamed|updated|changed|edited|modified|retitled|amended|set",
}
_ADVERBS = r"(?:(?:just|already|now|also|successfully|gone ahead and)\s+)*"
_EN_SUBJECT = rf"(?:i|we|i've|we've|i have|we have)\s+{_ADVERBS}"
_EN_YOU = r"(?:you|you've|you have)\s+already\s+"
_EN_PASSIVE = rf"(?:has|have|had)\s+{_ADVERBS}been\s+{_ADVERBS}|(?:was|were)\s+{_ADVERBS}|(?:is|are)\s+now\s+"
_EN_NEGATION = re.compile(
    r"\b(?:not|never|no longer|nothing|none|couldn't|could not|can't|cannot|didn't|did not|won't|wasn't|weren't|"
    r"haven't|hasn't|unable|failed|isn't|aren't|without|no task|no such)\b"
)
_EN_NOT_A_CLAIM = re.compile(
    r"^(?:shall|should|would|do|does|did|can|could|will|may|want|if|once|when|whenever|here (?:is|are)|these are|"
    r"those are|this is)\b|"
    r"\b(?:shall i|should i|do you want|would you like|want me to|let me know|if you|once you|you can|you could|"
    r"you may|you might|i can|i could|i will|i'll|i would|i'd|i'm going to|going to|please (?:confirm|tell)|"
    r"call (?:the )?\w+_task|use (?:the )?\w+_task|to (?:add|delete|remove|complete|rename|update)|that you|"
    r"you(?:'ve| have)? (?:finished|done|completed) (?:it|that|the)\b(?! task))"
)
_EN_STATUS_DONE = r"(?:done|complete|completed|finished|checked off|ticked off|crossed off|marked (?:as )?(?:done|complete|completed))"
# A state word after "is"/"are" (not "already": that is a status, not a change): "Task 7 is gone", "it's crossed off".
_EN_STATE: dict[Action, str] = {
    "added": r"(?:now )?on (?:your|the) (?:list|todo list|to-do list|tasks)(?: now)?|added",
    # "is done"/"is completed" alone is a status ("'A' is completed, 'B' is pending"); "now" makes it a change.
    "completed": r"(?:now |all )?(?:checked off|ticked off|crossed off|marked (?:as )?(?:done|complete|completed))"
    r"(?: now)?|now (?:done|complete|completed|finished)|(?:done|complete|completed|finished) now",
    "deleted": r"(?:now )?(?:gone|deleted|removed|cleared(?: out)?|off your list|off the list)(?: now)?",
    "updated": r"now (?:called|named|titled)|renamed|updated",
}
# A headline clause ending on its participle: "Gift task added", "task 3 deleted ✔".
_HEADLINE_SUBJECT = r"(?:^|«\d+»|\btask(?: #?\d+)?|\bone|\bit|#\d+)"
_EN_HEADLINE: dict[Action, str] = {
    "added": r"added|created|noted",
    "completed": r"completed|done|ticked off|checked off|crossed off",
    "deleted": r"deleted|removed|gone",
    "updated": r"renamed|updated|changed",
}


def _english_patterns() -> list[tuple[Action, re.Pattern[str]]]:
    patterns: list[tuple[Action, re.Pattern[str]]] = []
    for action, verbs in _EN_VERBS.items():
        patterns.append((action, re.compile(rf"\b{_EN_SUBJECT}(?:{verbs})\b")))
        patterns.append((action, re.compile(rf"\b{_EN_YOU}(?:{verbs})\b")))
        patterns.append((action, re.compile(rf"\b(?:{_EN_PASSIVE})(?:{verbs})\b")))
    for action, state in _EN_STATE.items():
        patterns.append((action, re.compile(rf"(?:\b(?:is|are)|'s|'re)\s+(?:{state})\b")))
        patterns.append((action, re.compile(rf"\bnow shows as\s+(?:{state})\b")))
    patterns.append(("completed", re.compile(r"\bnow shows as\s+(?:paid|sorted|finished)\b")))
    patterns.append(("updated", re.compile(r"\bnow (?:reads|says)\b|\bnoted on (?:task|it|«)|\bnote added\b")))
    patterns.append(("completed", re.compile(r"^done with (?:task )?#?\d+|^done with «")))
    for action, words in _EN_HEADLINE.items():
        patterns.append((action, re.compile(rf"{_HEADLINE_SUBJECT}\s+(?:{words})(?:\s+now)?\s*$")))
    return patterns


_EN_PATTERNS = _english_patterns()
_EN_LEADING = {action: re.compile(rf"^(?:{verbs})\b") for action, verbs in _EN_VERBS.items()}  # "Renamed it to X"
_ALL_VERBS = "|".join(_EN_VERBS.values())
_BARE_DONE = re.compile(
    r"^(?:done|all done|all set|sorted|ho gaya|ho gya|hogaya|ہو گیا|ہوگیا|کر دیا|kar diya|kr diya|ho gaya hai)[\s!.۔]*$"
)
_INTERJECTION = re.compile(
    r"^(?:yes|yep|ok|okay|sure|great|nice|alright|جی|جی ہاں|ٹھیک ہے|اچھا|ji|jee|theek hai|acha|haan)\W*$"
)
_AUXILIARY = re.compile(
    r"\b(?:is|are|was|were|has|have|been|i|i've|diya|dia|gaya|gya|ho|kar)\b|'s\b|دیا|دیے|گیا|گئے|ہے|ہیں|کر"
)
# "Your list: 'A' is done, 'B' is still open" lists statuses; it claims no change.
_LIST_HEADER = re.compile(
    r"^(?:your (?:list|tasks|to-?do list)|here(?:'s| is| are)[^:]*|tasks?|آپ کی فہرست|فہرست|aap ki list|list)\s*:"
)

# ---------------------------------------------------------------- Urdu (Nastaliq)
_UR_ACTIONS: dict[Action, str] = {
    "added": r"شامل|درج|لکھ|ڈال|ایڈ|بنا|موجود",
    "completed": r"مکمل|پورا|پوری|نمٹا|مارک|نشان لگا|ٹک",
    "deleted": r"حذف|ہٹا|ہٹ|مٹا|نکال|ڈیلیٹ",
    "updated": r"تبدیل|بدل|اپ ?ڈیٹ|نام\s+\S+\s+رکھ|ترمیم|نام اب",
}
_UR_STATE = re.compile(r"اب\s+(?:\S+\s+){0,4}(?:مکمل|موجود|شامل|حذف)\s+(?:ہے|ہیں|ہو گیا)")
_UR_PERFECT = re.compile(
    r"(?:دیا|دی|دیے|دیئے|گیا|گئی|گئے|چکا|چکی|چکے|لیا|لی|لیے)(?:\s|$|[۔!،]|ہے|ہیں)|جا\s+چک|کیا\s+گیا|ہو\s+گیا|ہے$|"
    r"(?:^|\s)(?:تھا|تھی|تھے)(?:\s|$|[۔!])"
)
_UR_NEGATION = re.compile(r"نہیں|نہ\s|ناکام|نہیں ملا")
_UR_NOT_A_CLAIM = re.compile(
    r"^کیا\s|کیا\s+میں|کیا\s+آپ|چاہتے|چاہیں|چاہیے|اگر|جب\s|دوں|دیں\b|کروں|کریں|سکتے|سکتا|سکتی|"
    r"(?:^|\s)(?:گا|گی|گے)(?:\s|$|[۔!])|"
    r"یہ وہ|جو آپ|کہ آپ|مبارک|شاباش آپ"
)

# ---------------------------------------------------------------- Roman Urdu
_RUR_ACTIONS: dict[Action, str] = {
    "added": r"add|shamil|shaamil|daal|dal|likh|save|note kar",
    "completed": r"complete|mukammal|done|poora|pura|finish|mark|tick|khatam",
    "deleted": r"delete|hata|hta|mita|nikal|remove",
    "updated": r"update|change|badal|tabdeel|rename|naam|note laga",
}
_RUR_PERFECT = re.compile(
    r"\b(?:diya|dia|di|diye|gaya|gya|gayi|gai|gaye|chuka|chuki|chuke|liya|lia|li)\b|\bho gaya\b|\bho gya\b|"
    r"\blag gaya\b"
)
_RUR_NEGATION = re.compile(r"\b(?:nahi|nahin|nai|na|nakam|nakaam|mila nahi)\b")
_RUR_NOT_A_CLAIM = re.compile(
    r"^kya\b|\bkya (?:main|mai|mein|aap|ap)\b|\b(?:chahte|chahti|chahenge|chahain|chahiye|agar|jab|doon|dun|"
    r"karoon|karun|karen|karein|karenge|sakte|sakti|sakta|gaa|ga|gi|ge|yeh woh|jo aap|ke aap|keh aap)\b|"
    r"\baap (?:\w+ )*kar chuke\b"
)
_RUR_NAME_NOW = re.compile(r"\bnaam ab\b")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.replace("’", "'").replace("‘", "'")


def _protected(sentence: str) -> tuple[str, list[str]]:
    """Quoted titles become placeholders, so that words inside them ("aur", "khatam") read as data, not grammar."""
    titles: list[str] = []

    def keep(match: re.Match[str]) -> str:
        titles.append(match.group(1).strip())
        return f" «{len(titles) - 1}» "

    return _QUOTED.sub(keep, sentence), titles


def _clause_actions(clause: str, first: bool) -> tuple[set[Action], bool]:
    """The actions a clause claims; True as the second value for a bare "Done!". `first`: the clause opens its
    sentence or continues its subject ("... and marked it done"), so a leading past participle is a claim."""
    if clause.rstrip().endswith(("?", "؟")):
        return set(), False
    if _BARE_DONE.match(_strip_symbols(clause)):
        return set(), True
    if _URDU_SCRIPT.search(clause):
        if _UR_NOT_A_CLAIM.search(clause) or _UR_NEGATION.search(clause):
            return set(), False
        if not (_UR_PERFECT.search(clause) or _UR_STATE.search(clause)):
            return set(), False
        return {a for a, verbs in _UR_ACTIONS.items() if re.search(verbs, clause)}, False
    english: set[Action] = set()
    if not (_EN_NOT_A_CLAIM.search(clause) or _EN_NEGATION.search(clause)):
        english = {action for action, pattern in _EN_PATTERNS if pattern.search(clause)}
        if first:
            english |= {action for action, pattern in _EN_LEADING.items() if pattern.search(clause)}
    if english:
        return english, False
    if _RUR_NOT_A_CLAIM.search(clause) or _RUR_NEGATION.search(clause):
        return set(), False
    if _RUR_PERFECT.search(clause) or _RUR_NAME_NOW.search(clause):
        found = {a for a, verbs in _RUR_ACTIONS.items() if re.search(rf"\b(?:{verbs})", clause)}
        return found, False
    return set(), False


def _strip_symbols(text: str) -> str:
    """Emoji and check marks carry no grammar: "Ticked off ✔" reads as "Ticked off"."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in ("S",) and ch not in "\ufe0f\u200d").strip()


def claims(text: str) -> list[Claim]:
    """Every claim the reply makes, clause by clause."""
    found: list[Claim] = []
    for sentence in _SENTENCE_END.split(_normalise(text)):
        sentence = _strip_symbols(sentence)
        if not sentence or _LIST_HEADER.match(sentence):
            continue
        protected, titles = _protected(sentence)
        pieces = _CLAUSE.split(protected)  # clause, break, clause, break, ...
        for index in range(0, len(pieces), 2):
            clause = pieces[index].strip()
            if not clause:
                continue
            earlier = [pieces[i].strip() for i in range(0, index, 2)]
            opens = all(_INTERJECTION.match(part) for part in earlier)  # "Yes, added it": this clause opens it
            leads = opens or bool(re.fullmatch(r"\s+(?:and|then|aur|اور)\s+", pieces[index - 1]))
            heads_list = not _AUXILIARY.search(clause) and not re.match(rf"(?:{_ALL_VERBS}|noted)\b", clause)
            if index + 1 < len(pieces) and pieces[index + 1].strip() == ":" and heads_list:
                continue  # "Tasks completed:" heads a list; "both are cleared out:" still claims
            actions, bare = _clause_actions(clause, first=leads)
            if not actions and not bare:
                continue
            named = tuple(titles[int(n)] for n in re.findall(r"«(\d+)»", clause))
            ids = tuple(int(n) for n in _TASK_ID.findall(clause))
            several = max((_COUNTS.get(word, 2) for word in _SEVERAL.findall(clause)), default=0)
            recap = bool(_RECAP.search(protected))  # a recap marker anywhere in the sentence covers its clauses
            kinds: list[Action | None] = [*sorted(actions)] if actions else [None]
            found += [Claim(action, named, ids, several, recap) for action in kinds]
    return found


def claimed_actions(text: str) -> set[Action]:
    """The kinds of action the reply says were done (a bare "Done!" names none)."""
    return {claim.action for claim in claims(text) if claim.action is not None}


def _same_title(a: str, b: str) -> bool:
    a, b = " ".join(_normalise(a).split()), " ".join(_normalise(b).split())
    return bool(a and b) and (a == b or a in b or b in a)


def _backs(claim: Claim, calls: Sequence[DoneCall]) -> bool:
    """Whether these successful calls do what the claim says."""
    kind = [c for c in calls if claim.action is None or c.action == claim.action]
    if not kind:
        return False
    if claim.titles and claim.task_ids and not any(c.task_id in claim.task_ids for c in kind):
        return False  # "'Buy milk' was added as task 2" is not task 1's add, whatever its title
    if claim.titles:
        if claim.action == "updated":
            # "Renamed 'old' to 'new'" or "updated 'title' with the note '...'": one title must be the task's (its
            # result names the new title, the turn's list the old one); naming another task first is a wrong task.
            def fits(c: DoneCall) -> bool:
                if not any(_same_title(t, c.title) or _same_title(t, c.old_title) for t in claim.titles):
                    return False
                return len(claim.titles) < 2 or not c.old_title or _same_title(claim.titles[0], c.old_title)

            return any(fits(c) for c in kind)
        return all(any(_same_title(t, c.title) for c in kind) for t in claim.titles)
    if claim.task_ids:
        return all(any(c.task_id == i for c in kind) for i in claim.task_ids)
    return len(kind) >= max(1, claim.several)


def unbacked_claims(text: str, done_now: Iterable[DoneCall], done_before: Iterable[DoneCall]) -> list[Claim]:
    """Claims that no successful call of this turn backs, and that are not a recap an earlier call backs."""
    now, before = list(done_now), list(done_before)
    missing = []
    for claim in claims(text):
        if _backs(claim, now):
            continue
        if (claim.recap or claim.titles) and _backs(claim, before):
            continue
        missing.append(claim)
    return missing
