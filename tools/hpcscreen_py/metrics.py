"""Metrics written out longhand so they need nothing beyond the standard library."""


def roc_auc(labels, scores):
    """Area under the ROC curve = P(score of a random positive > score of a random negative),
    ties counted as one half (Mann-Whitney U with average ranks)."""
    pairs = sorted(zip(scores, labels))
    n_pos = sum(1 for _, y in pairs if y)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC-AUC needs both classes")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2.0  # ranks i+1 .. j
        rank_sum += avg_rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def accuracy(pairs):
    pairs = list(pairs)
    return sum(1 for a, b in pairs if a == b) / len(pairs)
