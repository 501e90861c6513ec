"""The sample company served by the sandbox Notion and Graph servers: Lumen Labs.

Three teams, their people, and the facts each team writes down. The sandboxes render them the
way a team's wiki reads: one page per topic, a section per subject with a heading that names it,
each fact stated inside a paragraph of ordinary prose (`Fact.paragraph`). Only a few facts
(`discussed`) are also asked and answered in a thread, a mail or a page comment; the demo's eval
sets ask about every fact in other words. Every fact is specific and invented, so no base model
knows it beforehand.
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
    question: str  # how a colleague asks it (used for training QA from structure and threads)
    answer: str  # the short answer a correct reply contains
    eval_question: str  # the same question in other words (for the held-out eval set)
    answers: tuple[str, ...] = ()  # further answers a colleague would accept (eval aliases)
    section: str = ""  # the heading of the wiki section that states it (a subject, not a question)
    before: str = ""  # prose around the statement in its paragraph
    after: str = ""
    discussed: bool = False  # also asked and answered in a thread, a mail and a page comment

    @property
    def paragraph(self) -> str:
        """The wiki paragraph that states the fact among other sentences."""
        return " ".join(part for part in (self.before, self.statement, self.after) if part)


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
         "At what time does the weekly freeze on deploys begin?", answers=("Thursday 16:00", "Thursdays at 16:00"),
         section="Freeze window", before="We keep the end of the week quiet so that nobody spends a Friday night rolling back a release.",
         after="Anything merged after that waits for the next week; hotfixes for a live incident are the only exception and need the incident commander's go-ahead.", discussed=True),
    Fact("platform", "Deploy policy", "Production deploys go through the Skylark pipeline.",
         "Which pipeline do production deploys go through?", "Skylark",
         "What is the name of the pipeline used to deploy to production?",
         section="Pipeline", before="Nobody copies builds to servers by hand any more.",
         after="It builds the image, runs the smoke tests against staging and then rolls the change out region by region, stopping on its own if the error rate climbs."),
    Fact("platform", "On-call", "The on-call handoff happens every Monday at 09:30 in the #pager-handoff channel.",
         "When is the on-call handoff?", "Monday at 09:30",
         "On which day and time do we hand over on-call?", answers=("Mondays at 09:30", "Monday 9:30"),
         section="Handoff", before="The outgoing engineer writes a short summary of open incidents and noisy alerts before the week ends.",
         after="The incoming engineer reads the summary, asks questions there and only then takes the pager."),
    Fact("platform", "On-call", "A SEV1 incident must be acknowledged within 5 minutes.",
         "How fast must a SEV1 be acknowledged?", "within 5 minutes",
         "What is the acknowledgement deadline for a SEV1 incident?", answers=("5 minutes", "five minutes"),
         section="Response times", before="Pages are graded by severity, and the clock starts when the alert fires, not when someone notices it.",
         after="Lower severities can wait for working hours unless a customer is blocked."),
    Fact("platform", "Databases", "The primary Postgres cluster is called Basalt and runs in eu-west-3.",
         "What is the primary Postgres cluster called?", "Basalt",
         "What name does our main Postgres cluster have?",
         section="Primary cluster", before="Almost every service stores its state in Postgres.",
         after="It has two streaming replicas, and analytics queries should go to a replica rather than the primary.", discussed=True),
    Fact("platform", "Databases", "Database backups are kept for 35 days.",
         "How long are database backups kept?", "35 days",
         "For how many days do we retain database backups?", answers=("35",),
         section="Backups", before="Full snapshots are taken every night and write-ahead logs are shipped continuously.",
         after="Older snapshots are deleted automatically, so ask before the deadline if you need one preserved for an audit."),
    Fact("platform", "Internal cloud", "New services get a default quota of 8 vCPUs in the Nimbus cloud.",
         "What is the default vCPU quota for a new service?", "8 vCPUs",
         "How many vCPUs does a new service get by default?", answers=("8 vCPU", "eight vCPUs"),
         section="Quotas", before="Capacity is handed out per service rather than per team.",
         after="More can be requested with a short capacity note once a service has a month of usage data."),
    Fact("platform", "Internal cloud", "Service ownership is recorded in the Atlas catalog.",
         "Where is service ownership recorded?", "the Atlas catalog",
         "Which catalog records who owns a service?", answers=("Atlas",),
         section="Ownership", before="Every service needs an owning team before it receives production traffic.",
         after="The on-call tooling reads it to decide whom to page, so keep the entry current when a service changes hands."),
    # support
    Fact("support", "Refunds", "Refunds up to 200 euros can be approved by any support agent.",
         "Up to what amount can an agent approve a refund?", "200 euros",
         "What is the largest refund an agent may approve alone?", answers=("200 EUR", "€200"),
         section="Agent approvals", before="Most refund requests are small and we want customers to get them quickly.",
         after="Note the order number in the reason field so that finance can match the payment later.", discussed=True),
    Fact("support", "Refunds", "Refunds above 200 euros need approval from Dana Whitfield.",
         "Who approves refunds above 200 euros?", "Dana Whitfield",
         "Who has to sign off on a refund larger than 200 euros?",
         section="Larger refunds", before="Bigger amounts get a second look because they often point to a billing bug.",
         after="Collect the order history first, since she will ask for it."),
    Fact("support", "SLAs", "Enterprise customers get a first response within 2 business hours.",
         "What is the first-response SLA for enterprise customers?", "2 business hours",
         "How quickly must we first answer an enterprise customer?", answers=("two business hours",),
         section="Enterprise plan", before="Our contracts promise fast answers to the largest accounts.",
         after="The clock pauses outside the customer's business hours but not on our public holidays."),
    Fact("support", "SLAs", "Standard plan tickets get a first response within 1 business day.",
         "What is the first-response SLA on the standard plan?", "1 business day",
         "How fast do we reply first to a standard plan ticket?", answers=("one business day",),
         section="Standard plan", before="Everyone else is answered in the order their tickets arrive.",
         after="A short holding reply counts only if it says what happens next."),
    Fact("support", "Escalation", "Bugs are escalated to engineering through the Kestrel queue.",
         "Which queue do we use to escalate bugs to engineering?", "Kestrel",
         "What queue takes bug escalations to engineering?",
         section="Bugs", before="Support does not ping engineers in chat about defects.",
         after="Engineering triages it twice a day and links its findings back to the ticket.", discussed=True),
    Fact("support", "Escalation", "A ticket reopened three times is escalated to a team lead.",
         "When is a ticket escalated to a team lead?", "when reopened three times",
         "After how many reopenings does a ticket go to a team lead?", answers=("three times", "3 reopenings", "after three reopenings"),
         section="Repeat tickets", before="A ticket that keeps coming back usually means the first answer missed the real problem.",
         after="The lead reads the whole history and decides whether a call with the customer would help."),
    Fact("support", "Tools", "Customer conversations are handled in the Harbor helpdesk.",
         "Which helpdesk tool do we use?", "Harbor",
         "What is the name of our helpdesk tool?",
         section="Helpdesk", before="Email, chat and web-form requests all arrive in one place.",
         after="Every agent has a seat, and personal inboxes should never be used for customer cases."),
    Fact("support", "Tools", "The support macro for password resets is called RESET-7.",
         "What is the password reset macro called?", "RESET-7",
         "Which macro do we send for a password reset?",
         section="Macros", before="Canned replies save time on the requests we see every day.",
         after="It sends a reset link that expires after thirty minutes, so tell the customer to use it straight away."),
    # research
    Fact("research", "Cluster", "The research GPU cluster is called Halcyon and has 64 H100 GPUs.",
         "How many GPUs does the Halcyon cluster have?", "64 H100 GPUs",
         "What is the GPU count of Halcyon?", answers=("64 GPUs", "64"),
         section="Hardware", before="Training runs do not go to the public cloud.",
         after="It is shared by the whole team, and the scheduler gives each project a fair share of it.", discussed=True),
    Fact("research", "Cluster", "Jobs on Halcyon longer than 48 hours need a reservation.",
         "When do Halcyon jobs need a reservation?", "longer than 48 hours",
         "Above what runtime must a Halcyon job be reserved?", answers=("48 hours",),
         section="Long jobs", before="Short jobs are scheduled as they come.",
         after="Book the slot in the team calendar at least a day ahead so that others can plan around it."),
    Fact("research", "Experiments", "Experiments are tracked in the Lodestar tracker.",
         "Where are experiments tracked?", "Lodestar",
         "Which tracker holds our experiment runs?",
         section="Tracking", before="A result that cannot be traced back to its code and data does not count.",
         after="Log the commit, the dataset version and the configuration there before you start a run."),
    Fact("research", "Experiments", "Every experiment must set the random seed 1729 unless it sweeps seeds.",
         "Which random seed do experiments use by default?", "1729",
         "What is the default random seed for an experiment?",
         section="Reproducibility", before="Results need to be reproducible by someone else on the team.",
         after="Sweeps record each seed they used in the tracker instead."),
    Fact("research", "Papers", "Paper drafts are reviewed internally every Wednesday at 14:00.",
         "When is the internal paper review?", "Wednesday at 14:00",
         "On what day and hour are paper drafts reviewed?", answers=("Wednesdays at 14:00", "Wednesday 2 pm"),
         section="Internal review", before="Every paper gets read by colleagues before anyone outside sees it.",
         after="Send the draft to the reading group a day before so that people have time to read it.", discussed=True),
    Fact("research", "Papers", "External submissions need sign-off from Gustav Lindqvist.",
         "Who signs off external paper submissions?", "Gustav Lindqvist",
         "Whose approval does an external paper submission need?",
         section="Submissions", before="Conferences and journals see only work the team stands behind.",
         after="Ask him early if a deadline is close, because he reads every submission in full."),
    Fact("research", "Data", "Training datasets are stored in the Quarry bucket.",
         "Where are training datasets stored?", "the Quarry bucket",
         "In which bucket do we keep training datasets?", answers=("Quarry",),
         section="Storage", before="Datasets are large and are shared between projects.",
         after="Each one has a versioned folder with a short datasheet, and nothing there is ever edited in place."),
    Fact("research", "Data", "Evaluation sets are frozen on the first day of each quarter.",
         "When are evaluation sets frozen?", "the first day of each quarter",
         "On which day do we freeze evaluation sets?", answers=("first day of the quarter", "start of each quarter"),
         section="Evaluation sets", before="Numbers from different months must be comparable.",
         after="Changes proposed during a quarter are collected and applied at the next freeze."),
]


def facts_for(team: str) -> list[Fact]:
    return [f for f in FACTS if f.team == team]


def discussed_for(team: str) -> list[Fact]:
    """The team's facts that a thread, a mail and a page comment also discuss (a few)."""
    return [f for f in FACTS if f.team == team and f.discussed]


def person(team: str, index: int = 0) -> Person:
    members = [p for p in PEOPLE if p.team == team]
    return members[index % len(members)]
