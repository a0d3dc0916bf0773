namespace TaskFlow.Persistence;

/// <summary>
/// Who owns a flow detail's run, and since when: the owner's name and its epoch, a number that only grows. A conductor
/// uses the job's claim count as the epoch, so every claim of a job fences out the ones before it. See
/// <see cref="IFencedPersistenceBackend"/>.
/// </summary>
public sealed record FencingToken
{
    /// <summary>Creates a token.</summary>
    /// <param name="owner">The owner's name (for a conductor, its <c>Name</c>).</param>
    /// <param name="epoch">The owner's epoch, 1 or more (for a conductor, the job's <c>ClaimCount</c>).</param>
    /// <exception cref="ArgumentException">The owner is empty or contains NUL.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The epoch is below 1.</exception>
    public FencingToken(string owner, long epoch)
    {
        ArgumentNullException.ThrowIfNull(owner);
        if (string.IsNullOrWhiteSpace(owner)) throw new ArgumentException("A fencing token's owner must not be empty.", nameof(owner));
        if (owner.Contains('\0')) throw new ArgumentException("A fencing token's owner must not contain NUL characters.", nameof(owner));
        ArgumentOutOfRangeException.ThrowIfLessThan(epoch, 1L);
        Owner = owner;
        Epoch = epoch;
    }

    /// <summary>The owner's name.</summary>
    public string Owner { get; }

    /// <summary>The owner's epoch: a newer owner of the same flow detail has a higher one.</summary>
    public long Epoch { get; }

    /// <inheritdoc />
    public override string ToString() => $"'{Owner}' at epoch {Epoch}";
}
