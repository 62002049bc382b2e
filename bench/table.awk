# bench/table.awk: the statistics every benchmark table uses, loaded before each script's own
# awk program (`awk -f bench/table.awk -f /dev/stdin RESULTS <<<"$PROGRAM"`).
#
#   median(list)              the median of a space-separated list of numbers ("" if empty)
#   ratio(x, y)               x/y as "1.23x", or "-" when either is missing or y is 0
#   paired(a, b, val, range)  the median over the rounds where both ran of the per-round ratio
#                             val[a, r] / val[b, r]; the servers of one round run back to back,
#                             so the shared machine's slow drifts cancel out of it. With range=1
#                             it adds the lowest and highest ratio and in how many rounds the
#                             ratio was at least 1 (a sign test: about half of them when a and b
#                             are equal). The caller fills rounds[r] for every round it saw.

function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    if (n == 0) return ""
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}

function ratio(x, y) { return (x == "" || y == "" || y + 0 == 0) ? "-" : sprintf("%.2fx", x / y) }

function paired(a, b, val, range,    r, list, x, lo, hi, up, n) {
    list = ""; lo = ""; hi = ""; up = 0; n = 0
    for (r in rounds) if ((a, r) in val && (b, r) in val && val[b, r] + 0 > 0) {
        x = val[a, r] / val[b, r]; list = list " " x; n++
        if (x >= 1) up++
        if (lo == "" || x < lo) lo = x
        if (hi == "" || x > hi) hi = x
    }
    if (list == "") return "-"
    return range ? sprintf("%.2fx [%.2f-%.2f, >=1 in %d/%d]", median(list), lo, hi, up, n) : sprintf("%.2fx", median(list))
}
