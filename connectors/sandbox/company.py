"""The sample company served by the sandbox Notion and Graph servers: Lumen Labs.

Three teams, their people, and the facts each team writes down. Each team's wiki (`WIKI`) states
the facts inside ordinary prose paragraphs under topic headings, with context around them, as a
team writes its handbook; the sandboxes render it into pages and files, and put facts in
data-source rows and tables where a team would. Only a few facts per team (`discussed`) are also
asked and answered in a comment, mail or Teams thread. The demo's eval sets ask about every fact
in other words than the pages use. Every fact is specific and invented, so no base model knows it
beforehand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMPANY = "Lumen Labs"
DOMAIN = "lumenlabs.example"


@dataclass(frozen=True)
class Person:
    id: str  # a stable uuid-like id (Notion user id, Graph user id)
    name: str
    email: str
    team: str


@dataclass(frozen=True)
class Fact:
    team: str
    topic: str  # the page/file/thread it belongs to
    statement: str  # as written in the team's docs
    question: str  # how a colleague asks it (the thread's question, where the fact is `discussed`)
    answer: str  # the short answer a correct reply contains
    eval_question: str  # the same question in other words (for the held-out eval set)
    answers: tuple[str, ...] = ()  # further answers a colleague would accept (eval aliases)
    discussed: bool = False  # also asked and answered in a comment, mail and Teams thread


@dataclass(frozen=True)
class Team:
    name: str
    title: str
    description: str
    people: list[Person] = field(default_factory=list)


def _p(n: int, name: str, team: str) -> Person:
    first = name.split()[0].lower()
    return Person(id=f"00000000-0000-4000-8000-{n:012d}", name=name, email=f"{first}@{DOMAIN}", team=team)


PEOPLE = [
    _p(1, "Ada Moreau", "platform"),
    _p(2, "Bram Okafor", "platform"),
    _p(3, "Chen Liu", "platform"),
    _p(4, "Dana Whitfield", "support"),
    _p(5, "Emeka Balogun", "support"),
    _p(6, "Fatima Rahimi", "support"),
    _p(7, "Gustav Lindqvist", "research"),
    _p(8, "Hana Sato", "research"),
    _p(9, "Ivan Petrov", "research"),
]

TEAMS = [
    Team("platform", "Platform Engineering", "Runs deploys, on-call, databases and the internal cloud.",
         [p for p in PEOPLE if p.team == "platform"]),
    Team("support", "Customer Support", "Answers customers, handles refunds, escalations and SLAs.",
         [p for p in PEOPLE if p.team == "support"]),
    Team("research", "Research", "Trains models on the Halcyon GPU cluster and reviews papers.",
         [p for p in PEOPLE if p.team == "research"]),
]

FACTS = [
    # platform
    Fact("platform", "Deploy policy", "The weekly deploy freeze starts every Thursday at 16:00 UTC.",
         "When does the deploy freeze start?", "Thursday at 16:00 UTC",
         "At what time does the weekly freeze on deploys begin?", answers=("Thursday 16:00", "Thursdays at 16:00")),
    Fact("platform", "Deploy policy", "Production deploys go through the Skylark pipeline.",
         "Which pipeline do production deploys go through?", "Skylark",
         "What is the name of the pipeline used to deploy to production?", discussed=True),
    Fact("platform", "On-call", "The on-call handoff happens every Monday at 09:30 in the #pager-handoff channel.",
         "When is the on-call handoff?", "Monday at 09:30",
         "On which day and time do we hand over on-call?", answers=("Mondays at 09:30", "Monday 9:30")),
    Fact("platform", "On-call", "A SEV1 incident must be acknowledged within 5 minutes.",
         "How fast must a SEV1 be acknowledged?", "within 5 minutes",
         "What is the acknowledgement deadline for a SEV1 incident?", answers=("5 minutes", "five minutes")),
    Fact("platform", "Databases", "The primary Postgres cluster is called Basalt and runs in eu-west-3.",
         "What is the primary Postgres cluster called?", "Basalt",
         "What name does our main Postgres cluster have?", discussed=True),
    Fact("platform", "Databases", "Database backups are kept for 35 days.",
         "How long are database backups kept?", "35 days",
         "For how many days do we retain database backups?", answers=("35",)),
    Fact("platform", "Internal cloud", "New services get a default quota of 8 vCPUs in the Nimbus cloud.",
         "What is the default vCPU quota for a new service?", "8 vCPUs",
         "How many vCPUs does a new service get by default?", answers=("8 vCPU", "eight vCPUs")),
    Fact("platform", "Internal cloud", "Service ownership is recorded in the Atlas catalog.",
         "Where is service ownership recorded?", "the Atlas catalog",
         "Which catalog records who owns a service?", answers=("Atlas",)),
    # support
    Fact("support", "Refunds", "Refunds up to 200 euros can be approved by any support agent.",
         "Up to what amount can an agent approve a refund?", "200 euros",
         "What is the largest refund an agent may approve alone?", answers=("200 EUR", "€200")),
    Fact("support", "Refunds", "Refunds above 200 euros need approval from Dana Whitfield.",
         "Who approves refunds above 200 euros?", "Dana Whitfield",
         "Who has to sign off on a refund larger than 200 euros?", discussed=True),
    Fact("support", "SLAs", "Enterprise customers get a first response within 2 business hours.",
         "What is the first-response SLA for enterprise customers?", "2 business hours",
         "How quickly must we first answer an enterprise customer?", answers=("two business hours",)),
    Fact("support", "SLAs", "Standard plan tickets get a first response within 1 business day.",
         "What is the first-response SLA on the standard plan?", "1 business day",
         "How fast do we reply first to a standard plan ticket?", answers=("one business day",)),
    Fact("support", "Escalation", "Bugs are escalated to engineering through the Kestrel queue.",
         "Which queue do we use to escalate bugs to engineering?", "Kestrel",
         "What queue takes bug escalations to engineering?", discussed=True),
    Fact("support", "Escalation", "A ticket reopened three times is escalated to a team lead.",
         "When is a ticket escalated to a team lead?", "when reopened three times",
         "After how many reopenings is a ticket handed to a lead?", answers=("three times", "3 reopenings", "after three reopenings")),
    Fact("support", "Tools", "Customer conversations are handled in the Harbor helpdesk.",
         "Which helpdesk tool do we use?", "Harbor",
         "What is the name of our helpdesk tool?"),
    Fact("support", "Tools", "The support macro for password resets is called RESET-7.",
         "What is the password reset macro called?", "RESET-7",
         "Which macro do we send for a password reset?"),
    # research
    Fact("research", "Cluster", "The research GPU cluster is called Halcyon and has 64 H100 GPUs.",
         "How many GPUs does the Halcyon cluster have?", "64 H100 GPUs",
         "What is the GPU count of Halcyon?", answers=("64 GPUs", "64"), discussed=True),
    Fact("research", "Cluster", "Jobs on Halcyon longer than 48 hours need a reservation.",
         "When do Halcyon jobs need a reservation?", "longer than 48 hours",
         "Above what runtime must a Halcyon job be reserved?", answers=("48 hours",)),
    Fact("research", "Experiments", "Experiments are tracked in the Lodestar tracker.",
         "Where are experiments tracked?", "Lodestar",
         "Which tracker holds our experiment runs?"),
    Fact("research", "Experiments", "Every experiment must set the random seed 1729 unless it sweeps seeds.",
         "Which random seed do experiments use by default?", "1729",
         "What is the default random seed for an experiment?"),
    Fact("research", "Papers", "Paper drafts are reviewed internally every Wednesday at 14:00.",
         "When is the internal paper review?", "Wednesday at 14:00",
         "On what day and hour are paper drafts reviewed?", answers=("Wednesdays at 14:00", "Wednesday 2 pm"), discussed=True),
    Fact("research", "Papers", "External submissions need sign-off from Gustav Lindqvist.",
         "Who signs off external paper submissions?", "Gustav Lindqvist",
         "Whose approval does an external paper submission need?"),
    Fact("research", "Data", "Training datasets are stored in the Quarry bucket.",
         "Where are training datasets stored?", "the Quarry bucket",
         "In which bucket do we keep training datasets?", answers=("Quarry",)),
    Fact("research", "Data", "Evaluation sets are frozen on the first day of each quarter.",
         "When are evaluation sets frozen?", "the first day of each quarter",
         "On which day do we freeze evaluation sets?", answers=("first day of the quarter", "start of each quarter")),
]


#: Each team's wiki: (team, topic page) -> sections of (topic heading, prose paragraphs). Every
#: fact's statement sits, word for word, inside one paragraph of its topic's page.
WIKI: dict[tuple[str, str], list[tuple[str, list[str]]]] = {
    ("platform", "Deploy policy"): [
        ("Deploys", [
            "We ship small changes many times a day, and every change is reviewed by a second engineer "
            "before it merges. Production deploys go through the Skylark pipeline. Skylark builds the image, "
            "runs the smoke tests and rolls the change out one region at a time, so nobody deploys from a "
            "laptop."]),
        ("Release freeze", [
            "Late-week releases caused most of last year's weekend pages, so we stopped them. The weekly deploy "
            "freeze starts every Thursday at 16:00 UTC. Fixes for an active incident are the only exception, "
            "and they need a note in the incident channel before they ship."]),
    ],
    ("platform", "On-call"): [
        ("Handoff", [
            "Each rotation lasts a week, with a primary and a secondary engineer. The on-call handoff happens "
            "every Monday at 09:30 in the #pager-handoff channel. The outgoing primary walks through open "
            "incidents and anything that paged more than once."]),
        ("Incidents", [
            "Pages are graded by severity, and the grade decides how fast we move. A SEV1 incident must be "
            "acknowledged within 5 minutes. After that the primary opens an incident channel and posts an "
            "update there every half hour until the incident is resolved."]),
    ],
    ("platform", "Databases"): [
        ("Clusters", [
            "Most services keep their state in Postgres, which we run ourselves rather than through a managed "
            "offering. The primary Postgres cluster is called Basalt and runs in eu-west-3. Analytics queries "
            "go to its read replica, so a heavy report never slows the primary down."]),
        ("Backups", [
            "Snapshots are taken every night and copied to a second region. Database backups are kept for 35 "
            "days. We practise a restore once a quarter in the failover drill."]),
    ],
    ("platform", "Internal cloud"): [
        ("Quotas", [
            "Compute is handed out per service, not per team. New services get a default quota of 8 vCPUs in "
            "the Nimbus cloud. Asking for more takes a short form, and the platform team usually answers "
            "within a day."]),
        ("Ownership", [
            "Every service needs an owner who can be paged. Service ownership is recorded in the Atlas catalog. "
            "A service without an owner there cannot be deployed."]),
    ],
    ("support", "Refunds"): [
        ("Approval limits", [
            "Most refund requests are small and should be settled in the same conversation. Refunds up to 200 "
            "euros can be approved by any support agent. Refunds above 200 euros need approval from Dana "
            "Whitfield. Either way, write the order number in the refund reason."]),
    ],
    ("support", "SLAs"): [
        ("First response", [
            "We promise customers a first answer from a person, not an automatic acknowledgement. Enterprise "
            "customers get a first response within 2 business hours. Standard plan tickets get a first "
            "response within 1 business day. Business hours follow the customer's own time zone."]),
    ],
    ("support", "Escalation"): [
        ("Bugs", [
            "When a customer hits a bug we cannot work around, engineering needs a clean report. Bugs are "
            "escalated to engineering through the Kestrel queue. Include the steps to reproduce, the logs and "
            "the customer's plan."]),
        ("Repeat tickets", [
            "A ticket that keeps coming back usually hides a bigger problem. A ticket reopened three times is "
            "escalated to a team lead. The lead decides whether to call the customer or to bring in "
            "engineering."]),
    ],
    ("support", "Tools"): [
        ("Helpdesk", [
            "Customer conversations are handled in the Harbor helpdesk. Email, chat and phone notes all land "
            "in the same inbox there, so a customer's whole history is in one place."]),
        ("Macros", [
            "Macros keep our answers consistent and save typing. The support macro for password resets is "
            "called RESET-7. Check that the email address matches the account before you send it."]),
    ],
    ("research", "Cluster"): [
        ("Halcyon", [
            "We train on our own hardware rather than renting it. The research GPU cluster is called Halcyon "
            "and has 64 H100 GPUs. It is split into two node groups of 32 GPUs each."]),
        ("Reservations", [
            "Short jobs can be queued at any time. Jobs on Halcyon longer than 48 hours need a reservation. "
            "Ask Ivan Petrov a week ahead for anything that runs over a weekend."]),
    ],
    ("research", "Experiments"): [
        ("Tracking", [
            "Experiments are tracked in the Lodestar tracker. Log the config, the code revision and the dataset "
            "version with every run, so that a result can be traced back months later."]),
        ("Seeds", [
            "A result that changes with the seed is not a result yet. Every experiment must set the random seed "
            "1729 unless it sweeps seeds."]),
    ],
    ("research", "Papers"): [
        ("Internal review", [
            "Every draft is read by the team before anyone outside sees it. Paper drafts are reviewed "
            "internally every Wednesday at 14:00. Send the draft by Monday so that reviewers have time to "
            "read it."]),
        ("Submissions", [
            "Venues differ in their rules on preprints and code release. External submissions need sign-off "
            "from Gustav Lindqvist. He checks the venue, the author list and the data permissions."]),
    ],
    ("research", "Data"): [
        ("Storage", [
            "Training datasets are stored in the Quarry bucket. Raw crawls and processed versions live side by "
            "side there, and nothing is deleted without a note in the data log."]),
        ("Evaluation sets", [
            "Evaluation sets are frozen on the first day of each quarter. Within a quarter, results are only "
            "compared on the same frozen sets."]),
    ],
}


def facts_for(team: str) -> list[Fact]:
    return [f for f in FACTS if f.team == team]


def person(team: str, index: int = 0) -> Person:
    members = [p for p in PEOPLE if p.team == team]
    return members[index % len(members)]


def discussed(team: str) -> list[Fact]:
    """The team's facts that are also asked and answered in a thread (a few of them)."""
    return [f for f in facts_for(team) if f.discussed]


def wiki_sections(team: str, topic: str) -> list[tuple[str, list[str]]]:
    """The prose sections of a team's topic page: (topic heading, paragraphs)."""
    return WIKI[(team, topic)]
