# A job for the chaos tests: sh chaos_job.sh BOX SECONDS chaos-job
# It enters by publishing a marker atomically (ln fails if it exists). A marker that is
# already there belongs to a live job (an overlap) unless that job was killed: its PID is
# gone, a zombie, or now another program (PID reuse), all of which /proc tells. It logs its
# PID to BOX/runs and, on a network store, its fencing token to BOX/tokens and its launch
# number (CHAOS_LAUNCH, given by the test) with its job ID to BOX/jobs.
box=$1 marker=$1/inside
echo $$ > "$box/m.$$"
until ln "$box/m.$$" "$marker" 2>/dev/null; do
  other=$(cat "$marker" 2>/dev/null)
  if [ -n "$other" ] && grep -qs chaos-job "/proc/$other/cmdline" \
     && ! grep -qs '^State:.*Z' "/proc/$other/status"; then
    echo "$$ entered while $other was inside" >> "$box/violations"
    break
  fi
  rm -f "$marker"
done
rm -f "$box/m.$$"
echo $$ >> "$box/runs"
[ -z "$SINGLERUN_FENCING_TOKEN" ] || echo "$SINGLERUN_FENCING_TOKEN" >> "$box/tokens"
[ -z "$CHAOS_LAUNCH" ] || echo "$CHAOS_LAUNCH $SINGLERUN_JOB_ID" >> "$box/jobs"
sleep "$2"
[ "$(cat "$marker" 2>/dev/null)" = $$ ] && rm -f "$marker"
exit 0
