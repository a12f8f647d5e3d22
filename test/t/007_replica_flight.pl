# Single flight across a primary (A) and its streaming replica (B) that
# share one Valkey: a fresh redis-server of this test's own for each case,
# which every session points stampede.valkey_url at.
#
#   - B reads the rows A stored, from Valkey (a valkey hit);
#   - B's waiter is woken by A's PUBLISH, not left to its backoff;
#   - stampede.max_wait on B: 55P03, or B runs the query itself (its rows
#     not stored over the leader's);
#   - A's error (22012) reaches B's waiter; a later call runs again;
#   - garbage in Valkey (random, cut, flipped, empty, 100 fuzzed, keys of
#     the wrong type, a lock that never expires) is a miss, not a failure;
#   - an uncacheable result lets B's waiter run at once, without the lock;
#   - an invalidation on B during A's flight keeps its rows out of Valkey,
#     and removes every role's entry;
#   - scripts go by EVALSHA, and by EVAL again once Valkey forgot them.
#
# (001 covers the herd, terminated and slow leaders, cancelled waiters and
# Valkey stopped and started.)  Executions are counted by stampede_stats on
# each (a replica cannot bump a sequence).  Sessions are ordered by a gate
# (an advisory lock on A that A's query waits for; B's advisory locks are
# its own) and by the counters, never by sleeps.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(primary_and_replica stat_of call_sql start_call call_result
  close_gate open_gate gated_query waiting_on);
use Test::More;
use Time::HiRes qw(time);

my $GATE = 883;

my ($a, $b) = primary_and_replica(
	'', q{
CREATE SEQUENCE vf_runs;
CREATE ROLE vf_reader;
-- Rows each role sees differently: their entries are kept per role.
CREATE TABLE vf_rls (owner name, v int);
ALTER TABLE vf_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON vf_rls USING (owner = current_user);
GRANT SELECT ON vf_rls TO vf_reader;
});
is($b->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'server B is a replica of A');

my $valkey;

# The settings of each session: the case's Valkey, then SETTINGS (stampede.*
# without the prefix).
sub settings
{
	my (%settings) = @_;
	%settings = (
		valkey_url => $valkey->url,
		namespace => 'shared-by-a-and-b',
		backoff_base => '20ms',
		backoff_max => '200ms',
		%settings);
	return map { "stampede.$_ = '$settings{$_}'" } sort keys %settings;
}

# A query on NODE in a session of its own with the settings.
sub on
{
	my ($node, $sql, %settings) = @_;
	return $node->safe_psql('postgres', join('', map { "SET $_;\n" } settings(%settings)) . $sql);
}

# A call for KEY, of QUERY (by default one that takes 0.3 s).
sub call
{
	my ($key, $query) = @_;
	return call_sql($key, $query // 'SELECT 1::bigint AS run FROM pg_sleep(0.3)');
}

my $gated = gated_query($GATE);

# On A: close the gate and start a call for KEY (of QUERY) that waits there.
sub leader_at_gate
{
	my ($key, $query, %settings) = @_;
	my $gate = close_gate($a, $GATE);
	my ($leader, $pid) = start_call($a, call($key, $query // $gated), settings(%settings));
	$a->poll_query_until('postgres', waiting_on($pid, $GATE))
	  or die 'the leader did not reach the gate';
	return ($gate, $leader);
}

# On B: start a call for KEY, and wait until it waits for A's lock.
sub waiter_on_b
{
	my ($key, $query, %settings) = @_;
	my $waits = stat_of($b, 'lock_waits');
	my ($waiter) = start_call($b, call($key, $query), settings(%settings));
	$b->poll_query_until('postgres', "SELECT lock_waits > $waits FROM stampede_stats")
	  or die "B's call did not wait for A's lock";
	return $waiter;
}

# A call on B in a session of its own: its result (call_result).
sub call_on_b
{
	my ($key, $query, %settings) = @_;
	my ($s) = start_call($b, call($key, $query), settings(%settings));
	my $r = call_result($s);
	$s->quit;
	return $r;
}

sub commands
{
	my ($command) = @_;
	my ($calls) = $valkey->cli('INFO', 'commandstats') =~ /^cmdstat_$command:calls=(\d+)/m;
	return $calls // 0;
}

my %cases;
my @order;
# Each case runs with a fresh redis-server of its own, in this order.
sub case
{
	my ($name, $code) = @_;
	push @order, $name;
	$cases{$name} = $code;
}

case 'the other server reads the rows from Valkey' => sub {
	my $first = on($a, call('vf:shared'));
	my ($runs, $hits) = (stat_of($b, 'executions'), stat_of($b, 'valkey_hits'));
	is(on($b, call('vf:shared')), $first, 'B gets the rows A stored');
	is(stat_of($b, 'executions'), $runs, 'B ran nothing');
	is(stat_of($b, 'valkey_hits'), $hits + 1, "B's hit is counted in valkey_hits");
};

case "the other server's waiter is woken, not left to its backoff" => sub {
	my ($gate, $leader) = leader_at_gate('vf:wake');
	# A backoff of 5 s: only the leader's PUBLISH can bring B back soon.
	my $waiter = waiter_on_b('vf:wake', $gated, backoff_base => '5s', backoff_max => '5s');
	open_gate($gate);
	my ($l, $w) = (call_result($leader), call_result($waiter));
	ok(!defined $w->{code} && $w->{out} eq $l->{out} && $l->{out} =~ /^\d+$/,
		"B's waiter gets A's rows") or diag("leader: $l->{out} $l->{err}\nwaiter: $w->{out} $w->{err}");
	my $lag = $w->{ended} - $l->{ended};
	ok($lag < 1.0, sprintf('B returned %.2f s after A (its backoff is 5 s): woken', $lag));
	$_->quit foreach ($leader, $waiter);
};

case 'max_wait on the other server errs or runs uncached' => sub {
	my ($gate, $leader) = leader_at_gate('vf:maxwait');
	my $started = time;
	my $r = call_on_b('vf:maxwait', $gated, max_wait => '300ms', wait_timeout_action => 'error');
	is($r->{code}, '55P03', 'B, max_wait with wait_timeout_action = error: 55P03')
	  or diag("$r->{out} $r->{err}");
	ok($r->{ended} - $started < 1.5,
		sprintf('max_wait of 300 ms took %.2f s', $r->{ended} - $started));
	my $runs = stat_of($b, 'executions');
	my $running = call_on_b('vf:maxwait', $gated, max_wait => '300ms', wait_timeout_action => 'execute');
	ok(!defined $running->{code} && $running->{out} =~ /^\d+$/ && stat_of($b, 'executions') == $runs + 1,
		'B, max_wait with wait_timeout_action = execute: runs the query itself')
	  or diag("$running->{out} $running->{err}");
	open_gate($gate);
	my $l = call_result($leader);
	ok($l->{out} =~ /^\d+$/ && $l->{out} ne $running->{out}, "the leader's rows are its own")
	  or diag("$l->{out} $l->{err}");
	is(on($b, call('vf:maxwait', $gated)), $l->{out},
		"the leader's rows are stored, not those of the call that stopped waiting");
	$leader->quit;
};

case "the leader's error reaches the other server's waiters" => sub {
	# Runs on A only (B waits); the sequence keeps r - r from being folded.
	my $failing = "SELECT 1 / (r - r) AS run FROM (SELECT nextval('vf_runs') AS r "
	  . "FROM pg_advisory_xact_lock_shared($GATE)) s";
	my ($gate, $leader) = leader_at_gate('vf:fails', $failing);
	my $waiter = waiter_on_b('vf:fails', $failing);
	open_gate($gate);
	is(call_result($leader)->{code}, '22012', 'the leader fails with 22012');
	is(call_result($waiter)->{code}, '22012', "B's waiter gets the leader's error, 22012");
	$_->quit foreach ($leader, $waiter);
	# The error is for that flight's waiters: a call after it runs the query again.
	my $before = $a->safe_psql('postgres', 'SELECT last_value FROM vf_runs');
	my ($again) = start_call($a, call('vf:fails', $failing), settings());
	is(call_result($again)->{code} . ' ' . $a->safe_psql('postgres', 'SELECT last_value FROM vf_runs'),
		'22012 ' . ($before + 1), 'a later call runs the query again (and fails again)');
	$again->quit;
};

case 'garbage in Valkey is a miss' => sub {
	my $sql = "SELECT count(*) || ' ' || sum(length(pad)) FROM ("
	  . call_sql('vf:garbage', "SELECT g, repeat('x', g) AS pad FROM generate_series(1, 50) g",
		'g int, pad text') . ') s';
	my $expected = on($a, $sql);
	my @names = $valkey->names('stampede:*:v');
	is(scalar(@names), 1, 'one entry in Valkey') or diag("@names");
	my $name = $names[0];
	my $good = $valkey->command('GET', $name);
	my @variants = (
		[ 'random bytes', join('', map { chr(int(rand(256))) } 1 .. length($good)) ],
		[ 'truncated', substr($good, 0, length($good) / 2) ],
		[ 'one byte flipped', substr($good, 0, 200) . (substr($good, 200, 1) ^ "\x40") . substr($good, 201) ],
		[ 'empty', '' ]);
	# and a fuzz: random bytes flipped, cut or spliced, 100 times
	srand(20261202);
	foreach my $n (1 .. 100)
	{
		my $m = $good;
		foreach (1 .. 1 + int(rand(4)))
		{
			my $what = (qw(flip cut splice))[ int(rand(3)) ];
			my $at = length($m) ? int(rand(length($m))) : 0;
			if ($what eq 'flip' && length($m))
			{
				substr($m, $at, 1) ^= chr(1 << int(rand(8)));
			}
			elsif ($what eq 'cut')
			{
				substr($m, $at, 1 + int(rand(64))) = '';
			}
			else
			{
				substr($m, $at, 0) = join('', map { chr(int(rand(256))) } 1 .. 1 + int(rand(16)));
			}
		}
		push @variants, [ "fuzz $n", $m ];
	}
	my @wrong;
	foreach my $v (@variants)
	{
		$valkey->command('SET', $name, $v->[1]);
		my $got = on($a, $sql);
		push @wrong, "$v->[0]: got $got" if $got ne $expected;
	}
	is(scalar(@wrong), 0, scalar(@variants) . ' kinds of garbage in the entry: the right rows each time')
	  or diag(join("\n", @wrong));

	# Keys of the wrong Valkey type where the entry, its lock and its error
	# marker go, and a lock that never expires: a miss that Valkey answers
	# (no fallback, no Valkey error), and the garbage is replaced.
	my $counters = 'SELECT fallbacks || \' \' || valkey_errors FROM stampede_stats';
	my $before = $a->safe_psql('postgres', $counters);
	(my $lock = $name) =~ s/v\z/l/;
	(my $error = $name) =~ s/v\z/e/;
	$valkey->command(@$_) foreach ([ 'DEL', $name ], [ 'RPUSH', $name, 'x' ], [ 'DEL', $lock ],
		[ 'HSET', $lock, 'f', 'v' ], [ 'RPUSH', $error, 'x' ]);
	is(on($a, $sql), $expected, 'keys of the wrong type: the right rows');
	$valkey->command('DEL', $name);
	$valkey->command('SET', $lock, 'forever');
	is(on($a, $sql), $expected, 'a lock without expiry: the right rows');
	is($a->safe_psql('postgres', $counters), $before, 'garbage made no call fall back nor count a Valkey error');
	is($valkey->command('TYPE', $name), 'string', 'the entry was replaced');
};

case "an uncacheable result lets the other server's waiters run at once" => sub {
	# The leader's rows are too large to store: B's waiter runs the query at
	# once, without taking the lock in its turn.  On B (a replica) the query
	# sleeps for a second: time to look at the locks while it runs.
	my $big = "SELECT g::bigint AS run FROM generate_series(1, 1000) g, "
	  . "pg_advisory_xact_lock_shared($GATE), "
	  . "pg_sleep(CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END)";
	my ($gate, $leader) = leader_at_gate('vf:big', $big, max_entry_size => '1kB');
	my $waiter = waiter_on_b('vf:big', $big);
	open_gate($gate);
	my $l = call_result($leader);
	is(scalar(split /\n/, $l->{out}), 1000, 'the leader gets its 1000 rows') or diag($l->{err});
	$b->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
	  or die 'B did not run the query itself';
	my @locks = $valkey->names('stampede:*:l');
	my $w = call_result($waiter);
	is(scalar(split /\n/, $w->{out}), 1000, "B's waiter gets 1000 rows") or diag($w->{err});
	is("@locks", '', 'B ran the uncacheable query without taking the Valkey lock');
	$_->quit foreach ($leader, $waiter);
};

case "invalidate during a flight keeps its rows out of Valkey" => sub {
	my ($gate, $leader) = leader_at_gate('vf:inval');
	on($b, "SELECT stampede_invalidate('vf:inval')");
	open_gate($gate);
	my $l = call_result($leader);
	like($l->{out}, qr/^\d+$/, 'the leader gets its rows') or diag($l->{err});
	isnt(on($b, call('vf:inval', $gated)), $l->{out},
		'after the invalidation B does not get the rows computed before it');
	$leader->quit;
};

case "invalidate removes every role's entry" => sub {
	my $query = 'SELECT count(*) AS run FROM vf_rls';
	my $reader = $a->background_psql('postgres');
	$reader->query_safe(join('', map { "SET $_;\n" } settings()) . 'SET ROLE vf_reader');
	$reader->query_safe(call('vf:roles', $query));
	my @entries = $valkey->names('stampede:*:v');
	ok(@entries == 2 && grep({ !/:0:v\z/ } @entries), "a stub and the role's entry in Valkey")
	  or diag("@entries");
	is(on($b, "SELECT stampede_invalidate('vf:roles')"), 't', 'B: stampede_invalidate removed them');
	is(join(' ', $valkey->names('stampede:*:v')), '', 'no entry is left');
	my $before = stat_of($a, 'executions');
	$reader->query_safe(call('vf:roles', $query));
	is(stat_of($a, 'executions'), $before + 1, "the role's call runs the query again");
	$reader->quit;
};

case 'scripts go by EVALSHA, and by EVAL once Valkey forgot them' => sub {
	my $errors = stat_of($a, 'valkey_errors');
	# The first use of each script goes by EVAL (Valkey does not know it yet).
	on($a, call('vf:sha0', 'SELECT 0::bigint AS run'));
	my ($evals, $evalshas) = (commands('eval'), commands('evalsha'));
	ok($evals <= 2, "$evals EVALs for the first call: at most one per script");
	on($a, call('vf:sha1', 'SELECT 1::bigint AS run'));
	is(commands('eval'), $evals, 'a known script does not go by EVAL');
	ok(commands('evalsha') >= $evalshas + 2, 'the lock and store scripts go by EVALSHA');
	$valkey->cli('SCRIPT', 'FLUSH');
	$evals = commands('eval');
	is(on($a, call('vf:sha2', 'SELECT 2::bigint AS run')), '2', 'the right rows after SCRIPT FLUSH');
	ok(commands('eval') > $evals, 'NOSCRIPT falls back to EVAL');
	is(stat_of($a, 'valkey_errors'), $errors, 'NOSCRIPT is not taken for a Valkey failure');
	my $runs = stat_of($b, 'executions');
	is(on($b, call('vf:sha2', 'SELECT 2::bigint AS run')) . ' ' . stat_of($b, 'executions'),
		"2 $runs", 'B reads the rows stored after SCRIPT FLUSH');
};

foreach my $name (@order)
{
	note "---- $name";
	$valkey = StampedeTest::Valkey->new;
	$cases{$name}->();
	$valkey->stop;
}

done_testing();
