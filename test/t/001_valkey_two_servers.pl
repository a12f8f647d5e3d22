# Single flight across two PostgreSQL servers (a primary and its streaming
# replica) that share one Valkey (Debian's redis-server, with a password, on
# 127.0.0.1 at a free port).  What the issue asks of the Valkey mode, with
# real servers and real sessions:
#
#   - 100 sessions spread over both servers on one cold key: 1 execution;
#   - a leader terminated with pg_terminate_backend: the other server's
#     waiter takes over well before stampede.lock_timeout;
#   - a query longer than stampede.lock_timeout: still 1 execution;
#   - a waiter cancelled during its backoff: 57014 at once, no lock left;
#   - Valkey stopped: calls keep returning the right rows, fallbacks
#     counted; started again: Valkey used again;
#   - AUTH with a password (every call here goes through it); a wrong one
#     is refused and never shown.
#
# Sessions are ordered by a gate (an advisory lock on the primary that the
# leader's query waits for) and by polling pg_locks and the counters, never
# by sleeps.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(primary_and_replica stat_of call_sql start_call wait_output
  close_gate gated_query leader_at_gate stampede_locks);
use Test::More;
use Time::HiRes qw(time);

my $GATE = 881;
my $password = 'tap-s3cret';
my $valkey = StampedeTest::Valkey->new(password => $password);
my $valkey_port = $valkey->port;

my ($primary, $replica) = primary_and_replica(
	qq{
max_connections = 130
stampede.valkey_url = '@{[ $valkey->url ]}'
stampede.backoff_base = '20ms'
stampede.backoff_max = '200ms'
stampede.valkey_retry_interval = '200ms'
});
ok($replica->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 't',
	'the second server is a streaming replica of the first');

my @servers = ($primary, $replica);

sub executions
{
	my $sum = 0;
	$sum += stat_of($_, 'executions') foreach @servers;
	return $sum;
}

my $gated = gated_query($GATE);

sub leader_on_primary
{
	my ($key) = @_;
	return leader_at_gate($primary, $GATE, call_sql($key, $gated));
}

sub waiter_on_replica
{
	my ($key, $query) = @_;
	my $waits = stat_of($replica, 'lock_waits');
	my ($waiter, $pid) = start_call($replica, call_sql($key, $query));
	$replica->poll_query_until('postgres',
		"SELECT lock_waits > $waits FROM stampede_stats")
	  or die "the replica's call did not wait";
	return ($waiter, $pid);
}

# How many scripts (EVALSHA and EVAL) Valkey has run.
sub script_calls
{
	my $stats = $valkey->cli('INFO', 'commandstats');
	my $sum = 0;
	$sum += $1 while $stats =~ /^cmdstat_eval(?:sha)?:calls=(\d+)/mg;
	return $sum;
}

# ---- 100 sessions over both servers, one cold key: one execution ----
{
	my $script = $valkey->dir . "/herd.sql";
	PostgreSQL::Test::Utils::append_to_file($script, call_sql('tap:herd',
		'SELECT 42::bigint AS run FROM pg_sleep(0.3)') . " \\gset\n"
		  . "\\if :run != 42\nSELECT 1 / 0;\n\\endif\n");
	my $before = executions();
	my $scripts_before = script_calls();
	my @runs;
	foreach my $node (@servers)
	{
		my ($out, $err) = ('', '');
		push @runs,
		  [
			IPC::Run::start(
				[
					'pgbench', '-n', '-c', '50', '-j', '2', '-t', '1', '-f',
					$script, '-h', $node->host, '-p', $node->port, 'postgres'
				],
				'>', \$out, '2>', \$err),
			\$out, \$err
		  ];
	}
	foreach my $run (@runs)
	{
		$run->[0]->finish;
		is(($run->[0]->results)[0], 0, 'pgbench: 50 sessions got the right rows')
		  or diag(${ $run->[1] } . ${ $run->[2] });
		like(${ $run->[1] }, qr{number of transactions actually processed: 50/50},
			'pgbench: every session answered');
	}
	is(executions() - $before, 1, '100 sessions over two servers ran the cold key once');
	# Each server's backends coalesce on its advisory lock first: only its
	# leader runs the lock script, a few rounds at most, not each backend.
	my $scripts = script_calls() - $scripts_before;
	ok($scripts <= 20, "the lock script ran $scripts times for 100 sessions on two servers");
}

# ---- a terminated leader: the other server's waiter takes over at once ----
{
	my $gate = close_gate($primary, $GATE);
	my ($leader, $leader_pid) = leader_on_primary('tap:terminated');
	my ($waiter) = waiter_on_replica('tap:terminated', $gated);
	my $terminated = time;
	$primary->safe_psql('postgres', "SELECT pg_terminate_backend($leader_pid)");
	my $took = wait_output($waiter, qr/^\d+$/m, 'stdout') - $terminated;
	ok($took < 3, sprintf('the waiter took over %.2f s after the leader was terminated '
		  . '(stampede.lock_timeout is 10 s)', $took));
	$gate->query_safe("SELECT pg_advisory_unlock($GATE)");
	$gate->quit;
	$waiter->quit;
	eval { $leader->quit };
}

# ---- a query longer than lock_timeout: its lock is renewed, one execution ----
{
	my $before = executions();
	my $slow = 'SELECT 9::bigint AS run FROM pg_sleep(2)';
	my ($leader) = start_call($primary, call_sql('tap:slow', $slow),
		"stampede.lock_timeout = '600ms'");
	$primary->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
	  or die 'the slow leader did not start';
	my ($waiter) = waiter_on_replica('tap:slow', $slow);
	wait_output($leader, qr/^9$/m, 'stdout');
	wait_output($waiter, qr/^9$/m, 'stdout');
	is(executions() - $before, 1,
		'a 2 s query with a 600 ms lock_timeout ran once over two servers');
	$leader->quit;
	$waiter->quit;
}

# ---- a waiter cancelled in its backoff: 57014 at once, no lock left ----
{
	my $gate = close_gate($primary, $GATE);
	my ($leader) = leader_on_primary('tap:cancel');
	my ($waiter, $waiter_pid) = waiter_on_replica('tap:cancel', $gated);
	my $cancelled = time;
	$replica->safe_psql('postgres', "SELECT pg_cancel_backend($waiter_pid)");
	my $took = wait_output($waiter, qr/57014/, 'stderr') - $cancelled;
	ok($took < 0.5, sprintf('the cancelled waiter raised 57014 after %.3f s', $took));
	is(stampede_locks($replica), 0, 'the cancelled waiter left no lock on its server');
	$gate->query_safe("SELECT pg_advisory_unlock($GATE)");
	wait_output($leader, qr/^\d+$/m, 'stdout');
	my ($rows) = $leader->{stdout} =~ /^(\d+)$/m;
	is($replica->safe_psql('postgres', call_sql('tap:cancel', $gated)),
		$rows, "the replica then reads the leader's rows");
	is($valkey->cli('--scan', '--pattern', 'stampede:*:l'), '', 'no Valkey lock is left');
	$gate->quit;
	$leader->quit;
	$waiter->quit;
}

# ---- a replica behind an invalidation does not store its old rows ----
{
	$primary->safe_psql('postgres',
		'CREATE TABLE tap_price (v int); INSERT INTO tap_price VALUES (1)');
	$primary->wait_for_catchup($replica);
	my $call = call_sql('tap:price', 'SELECT v::bigint AS run FROM tap_price');
	is($replica->safe_psql('postgres', $call), '1', 'the replica reads the price');
	$replica->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	$primary->safe_psql('postgres',
		"BEGIN; UPDATE tap_price SET v = 2; SELECT stampede_invalidate('tap:price'); COMMIT;");
	is($replica->safe_psql('postgres', $call), '1',
		'a replica that has not replayed the change still reads the old price');
	is($primary->safe_psql('postgres', $call), '2',
		"the primary then reads the new price, not the lagging replica's rows");
	$replica->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
	$primary->wait_for_catchup($replica);
	is($replica->safe_psql('postgres', $call), '2', 'the replica, caught up, reads the new price');
}

# ---- Valkey stopped mid-test, then started again ----
{
	$valkey->stop;
	my $fallbacks = stat_of($primary, 'fallbacks');
	my $errors = stat_of($primary, 'valkey_errors');
	is($primary->safe_psql('postgres', call_sql('tap:down', 'SELECT 42::bigint AS run')),
		'42', 'Valkey stopped: the call returns the right rows');
	ok(stat_of($primary, 'valkey_errors') > $errors, 'Valkey stopped: the failure is counted');
	my $ran = stat_of($primary, 'executions');
	is($primary->safe_psql('postgres', call_sql('tap:down', 'SELECT 42::bigint AS run')),
		'42', 'Valkey stopped: the next call returns the right rows');
	is(stat_of($primary, 'executions'), $ran, 'Valkey stopped: the next call is a hit in the local store');
	ok(stat_of($primary, 'fallbacks') > $fallbacks, 'Valkey stopped: fallbacks counted');
	is($primary->safe_psql('postgres', 'SELECT mode FROM stampede_status()'),
		'fallback', 'Valkey stopped: stampede_status says fallback');

	$valkey->start;
	$primary->poll_query_until('postgres', 'SELECT mode = $$valkey$$ FROM stampede_status()')
	  or die 'Valkey was not used again';
	$primary->safe_psql('postgres', call_sql('tap:back', 'SELECT 7::bigint AS run'));
	my $before = stat_of($replica, 'executions');
	$replica->poll_query_until('postgres', 'SELECT mode = $$valkey$$ FROM stampede_status()')
	  or die 'the replica did not use Valkey again';
	is($replica->safe_psql('postgres', call_sql('tap:back', 'SELECT 7::bigint AS run')),
		'7', "Valkey back: the replica reads the primary's rows from it");
	is(stat_of($replica, 'executions'), $before, 'Valkey back: the replica ran nothing');
}

# ---- AUTH: a wrong password is refused and never shown ----
{
	my $status = $primary->safe_psql(
		'postgres', qq{
SET stampede.valkey_url = 'redis://:not-it\@127.0.0.1:$valkey_port';
SELECT valkey_reachable::text || ' ' || coalesce(valkey_error, '') FROM stampede_status();
});
	like($status, qr/^false .*(AUTH|WRONGPASS|invalid)/i, 'a wrong password is refused');
	unlike($status, qr/not-it|\Q$password\E/, 'the error shows no password');
}

$valkey->stop;
done_testing();
