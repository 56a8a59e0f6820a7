// Parse iCalendar feeds with ical.js (the parser Thunderbird uses) and print,
// as JSON, every occurrence in a window: [uid, start UTC, end UTC, summary].
// Usage: node check.mjs FROM_ISO TO_ISO FILE...   Any console warning fails.
import { readFileSync } from "node:fs";
import ICAL from "ical.js";

const warnings = [];
for (const level of ["warn", "error"]) {
  console[level] = (...args) => warnings.push(args.join(" "));
}

const [from, to, ...files] = process.argv.slice(2);
const rangeStart = ICAL.Time.fromJSDate(new Date(from), true);
const rangeEnd = ICAL.Time.fromJSDate(new Date(to), true);
const iso = (t) => t.toJSDate().toISOString().replace(".000Z", "Z");
const day = (t) => t.toString().slice(0, 10);
const result = {};

for (const file of files) {
  const text = readFileSync(file, "utf8");
  const calendar = new ICAL.Component(ICAL.parse(text));
  for (const tz of calendar.getAllSubcomponents("vtimezone")) {
    ICAL.TimezoneService.register(tz);
  }
  const masters = new Map();
  const exceptions = [];
  for (const vevent of calendar.getAllSubcomponents("vevent")) {
    const event = new ICAL.Event(vevent);
    if (event.isRecurrenceException()) exceptions.push(event);
    else masters.set(event.uid, event);
  }
  for (const ex of exceptions) masters.get(ex.uid)?.relateException(ex);
  const occurrences = [];
  for (const event of masters.values()) {
    const allDay = event.startDate.isDate;
    const fmt = allDay ? day : iso;
    if (!event.isRecurring()) {
      occurrences.push([event.uid, fmt(event.startDate), fmt(event.endDate), event.summary]);
      continue;
    }
    const it = event.iterator();
    let next;
    let n = 0;
    while ((next = it.next()) && n < 5000) {
      n += 1;
      if (next.compare(rangeEnd) >= 0) break;
      const details = event.getOccurrenceDetails(next);
      if (details.endDate.compare(rangeStart) <= 0) continue;
      occurrences.push([event.uid, fmt(details.startDate), fmt(details.endDate), details.item.summary]);
    }
  }
  occurrences.sort();
  result[file] = occurrences;
}
if (warnings.length) {
  process.stderr.write(warnings.join("\n") + "\n");
  process.exit(2);
}
process.stdout.write(JSON.stringify(result));
