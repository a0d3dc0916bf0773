using TaskFlow.Failures;

namespace TaskFlow.Retries;

/// <summary>
/// A retry controller's attempts during a run. Attempts are appended, the latest one may be replaced (when a failure
/// is recorded in it), and the whole log is cleared when the controller is reverted. <see cref="Snapshot"/> hands a
/// controller a <see cref="RetryHistory"/> in O(1) instead of copying every attempt on every call, which made a run of
/// n retry rounds cost O(n²).
/// </summary>
/// <remarks>
/// Why a snapshot stays valid without a copy: it shares the entries below its last one, which are never written
/// again — appends go past them, <see cref="ReplaceLast"/> writes only the current last entry (which the snapshot
/// holds by value), growing copies into a new array, and <see cref="Clear"/> starts a new array.
/// </remarks>
internal sealed class RetryAttemptLog
{
    private RetryAttempt[] _items = [];

    public int Count { get; private set; }

    public RetryAttempt this[int index]
    {
        get
        {
            if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"The log holds {Count} attempt(s).");
            return _items[index];
        }
    }

    public void Add(RetryAttempt attempt)
    {
        if (Count == _items.Length) Array.Resize(ref _items, Math.Max(4, Count * 2));
        _items[Count++] = attempt;
    }

    /// <summary>Replaces the latest attempt (attempts are immutable records: a controller may keep ones it was given).</summary>
    public void ReplaceLast(RetryAttempt attempt)
    {
        if (Count == 0) throw new InvalidOperationException("The log holds no attempt to replace.");
        _items[Count - 1] = attempt;
    }

    public void Clear()
    {
        _items = [];
        Count = 0;
    }

    /// <summary>The attempts so far as an immutable history, without copying them.</summary>
    public RetryHistory Snapshot(Failure? failure) =>
        Count == 0 && failure is null ? RetryHistory.Empty : new RetryHistory(new View(_items, Count), failure);

    /// <summary>The first <c>count - 1</c> entries of a shared array, then the last entry as it was when taken.</summary>
    private sealed class View(RetryAttempt[] items, int count) : IReadOnlyList<RetryAttempt>
    {
        private readonly RetryAttempt? _last = count == 0 ? null : items[count - 1];

        public int Count => count;

        public RetryAttempt this[int index] =>
            (uint)index >= (uint)count ? throw new ArgumentOutOfRangeException(nameof(index), index, $"The history holds {count} attempt(s).")
            : index == count - 1 ? _last! : items[index];

        public IEnumerator<RetryAttempt> GetEnumerator()
        {
            for (int i = 0; i < count; i++) yield return this[i];
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
