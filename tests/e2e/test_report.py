#!/usr/bin/python3
"""report.html, loaded in headless Chromium (Debian's chromium): the page parses and holds the
summary, the top hits with their RDKit structure drawings, the score histogram, throughput per
rank and the reject reasons. `hpcscreen report RUN` rebuilds it for a partial run too."""
import html.parser
import json
import os
import shutil
import subprocess

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_json, run


class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.elements = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a, list(self.stack)))
        if tag not in ("br", "meta", "img", "hr", "link"):  # HTML void elements have no end tag
            self.stack.append((tag, a.get("id"), a.get("class")))

    def handle_startendtag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a, list(self.stack)))

    def handle_endtag(self, tag):
        if any(x[0] == tag for x in self.stack):
            while self.stack.pop()[0] != tag:
                pass

    def inside(self, tag, ancestor_id=None, ancestor_class=None, cls=None):
        return [e for e in self.elements if e[0] == tag and (cls is None or e[1].get("class") == cls)
                and (ancestor_id is None or any(x[1] == ancestor_id for x in e[2]))
                and (ancestor_class is None or any(x[2] == ancestor_class for x in e[2]))]


def browser_dom(path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium is missing: install it (tools/install-deps.sh does)")
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"file://{path}"],
                       capture_output=True, text=True, timeout=120)
    d = Dom()
    d.feed(r.stdout)
    return d, r.stdout


def main():
    a = e2e_args()
    work = a.work
    smi = os.path.join(work, "in.smi")
    with open(NCI) as f, open(smi, "w") as o:
        o.writelines(f.readlines()[:1500])
        o.write("C1CC broken\nCN(C)(C)(C)C pentavalent\n")
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib], expect=0)
    rd = os.path.join(work, "run")
    mpirun(2, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"), "--out", rd,
               "--top-k", "15", "--chunk-rows", "100"], expect=0)
    page = os.path.join(rd, "report.html")
    check(os.path.exists(page), "screen writes report.html at the end")
    dom, text = browser_dom(page)
    check("hpcscreen screen report" in text, "Chromium loaded the page")
    check(len(dom.inside("table", cls=None, ancestor_id=None)) >= 3 and any(e[1].get("id") == "summary" for e in dom.elements), "summary table")
    hits = dom.inside("tr", cls="hit", ancestor_id="hits")
    check(len(hits) == 15, f"15 hit rows ({len(hits)})")
    drawings = dom.inside("svg", ancestor_class="mol")
    check(len(drawings) == 15, f"a 2D structure drawing (inline SVG from RDKit) for every hit ({len(drawings)})")
    check(len(dom.inside("rect", ancestor_id="histogram", cls="bar")) == 40, "a 40-bin score histogram")
    check(len(dom.inside("polyline", ancestor_id="throughput", cls="rank-line")) == 2, "throughput over time: one line per rank")
    rejects = dom.inside("tr", ancestor_id="rejects")
    check(len(rejects) == 3, f"reject reasons by count: a header and 2 reasons ({len(rejects) - 1})")
    check("Every record is accounted for" in text, "the accounting status is stated")
    check("Complete." in text and "In progress" not in text, "the run's own page says it is complete")

    print("== a partial run, report rebuilt by 'hpcscreen report'")
    rd2 = os.path.join(work, "partial")
    mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"), "--out", rd2,
               "--chunk-rows", "100", "--max-chunks", "3"], expect=75)
    os.remove(os.path.join(rd2, "report.html"))
    r = run([a.hpcscreen, "report", rd2], expect=0)
    check(r.stdout.strip().endswith("report.html") and os.path.exists(os.path.join(rd2, "report.html")), "hpcscreen report RUN rebuilds the page")
    dom, text = browser_dom(os.path.join(rd2, "report.html"))
    check("Not complete" in text and "--resume" in text, "a partial run says so and how to continue")
    check(read_json(os.path.join(rd2, "run.json"))["chunks_committed"] == 3, "3 chunks committed")
    print("== report of a run still going (another process holds the run folder's lock)")
    import fcntl
    # As a resumed run looks while it runs: its attempt is in run_config.json, run.json is the last one's.
    config_path = os.path.join(rd2, "run_config.json")
    config = read_json(config_path)
    config["attempts"].append(dict(config["attempts"][-1]))
    with open(config_path, "w") as f:
        json.dump(config, f)
    with open(os.path.join(rd2, "lock")) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run([a.hpcscreen, "report", rd2], expect=0)
        dom, text = browser_dom(os.path.join(rd2, "report.html"))
        check("In progress" in text and "--resume" not in text and "cut off" not in text,
              "the page says the run is in progress, not that it ended or needs --resume")
        r = mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"),
                       "--out", rd2, "--chunk-rows", "100", "--resume"])
        check(r.returncode == 1 and "in use" in r.stderr, f"a resume meanwhile is refused (exit {r.returncode})")
    run([a.hpcscreen, "report", rd2], expect=0)
    dom, text = browser_dom(os.path.join(rd2, "report.html"))
    check("Not complete" in text and "In progress" not in text, "once the lock is free: not complete, as before")
    with open(os.path.join(rd, "lock")) as held:  # a finished run between its run.json and its exit
        fcntl.flock(held, fcntl.LOCK_EX)
        run([a.hpcscreen, "report", rd], expect=0)
    dom, text = browser_dom(os.path.join(rd, "report.html"))
    check("Complete." in text and "In progress" not in text,
          "a run whose attempt has written run.json is finished, whatever its lock says")
    r = run([a.hpcscreen, "report", os.path.join(work, "nothing")])
    check(r.returncode == 1 and "run.json" in r.stderr, "report on a folder that is no run says why")
    finish()


if __name__ == "__main__":
    main()
