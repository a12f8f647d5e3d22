# Valkey failing under a primary and its streaming replica that share it
# (Debian's redis-server, with a password, on 127.0.0.1 at a free port, as
# in 001).  What must hold when Valkey drops, stalls or goes away:
#
#   1. a leader whose connection Valkey dropped while its query ran (idle
#      `timeout` shorter than the query, CLIENT KILL) stores its rows in
#      Valkey anyway (the connection is made again), and leaves no lock;
#      a leader whose store fails (CLIENT PAUSE ALL longer than
#      stampede.valkey_timeout) drops its lease: its lock goes away as soon
#      as Valkey answers, within stampede.lock_timeout at the latest, and is
#      never renewed again;
#   2. 20 pgbench clients over both servers through DEBUG SLEEP and CLIENT
#      PAUSE: every client finishes with the right rows, no lock is left in
#      Valkey and no backend still waits;
#   3. stampede_invalidate while the session's circuit is open says it
#      could not reach Valkey (false, a WARNING), drops the local copy, and
#      the invalidation reaches Valkey once it answers again: both servers
#      then read the new value;
#   4. an outage, an invalidation on the other server while Valkey is back,
#      a second outage: the primary does not answer from the local copy it
#      made during the first outage (also when it made no call in between);
#   5. stampede.backoff_base and backoff_max are superuser-only (42501).
#
# Sessions are ordered by a gate (an advisory lock on the primary that the
# leader's query waits for), pg_locks, pg_stat_activity and the counters.
# The only fixed waits are for Valkey itself: a DEBUG SLEEP or CLIENT PAUSE
# to pass, and the second of scenario 4 that Valkey is up.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(primary_and_replica stat_of call_sql start_call wait_output
  close_gate open_gate gated_query leader_at_gate);
use Test::More;
use Time::HiRes qw(time sleep);

my $GATE = 882;
my $password = 'tap-s3cret';
my $valkey = StampedeTest::Valkey->new(password => $password, debug => 1);
my $valkey_dir = $valkey->dir;

# The settings of postgresql.conf, in seconds, for the bounds below.
my $valkey_timeout = 0.5;
my $lock_timeout = 3;
my $retry_interval = 0.2;

sub lock_keys { return $valkey->names('stampede:*:l'); }
sub entry_keys { return $valkey->names('stampede:*:v'); }

my ($primary, $replica) = primary_and_replica(
	qq{
max_connections = 60
stampede.valkey_url = '@{[ $valkey->url ]}'
stampede.backoff_base = '20ms'
stampede.backoff_max = '200ms'
stampede.valkey_timeout = '500ms'
stampede.lock_timeout = '3s'
stampede.valkey_retry_interval = '200ms'
}, q{
CREATE TABLE tap_inval (v int);   INSERT INTO tap_inval VALUES (1);
CREATE TABLE tap_outage (v int);  INSERT INTO tap_outage VALUES (1);
CREATE TABLE tap_outage2 (v int); INSERT INTO tap_outage2 VALUES (1);
CREATE ROLE tap_plain LOGIN;
});
ok($replica->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 't',
	'the second server is a streaming replica of the first');

# A query in a background session: its output and what it wrote to stderr.
sub session_query
{
	my ($session, $sql) = @_;
	$session->{stderr} = '';
	my $out = $session->query($sql);
	return ($out, $session->{stderr});
}

my $gated = gated_query($GATE);

sub leader_on_primary
{
	my ($key) = @_;
	return leader_at_gate($primary, $GATE, call_sql($key, $gated));
}

# The one Valkey lock there is (the leader's), once it is there.
sub the_lock
{
	foreach (1 .. 100)
	{
		my @locks = lock_keys();
		return $locks[0] if @locks == 1;
		die 'more than one Valkey lock: ' . join(' ', @locks) if @locks > 1;
		sleep(0.05);
	}
	die 'the leader took no Valkey lock';
}

# A call on the replica in a fresh session, bounded (a lock that is never
# let go would hold it for ever): its value, how it was answered
# (stampede.last_call) and what it added to the replica's counters.
sub replica_call
{
	my ($key, $query) = @_;
	my $hits = stat_of($replica, 'hits');
	my $executions = stat_of($replica, 'executions');
	my $started = time;
	my $out = $replica->safe_psql('postgres',
		"SET stampede.max_wait = '1s';\nSET statement_timeout = '10s';\n"
		  . call_sql($key, $query)
		  . ";\nSHOW stampede.last_call;");
	my ($value, $how) = split /\n/, $out;
	return {
		value => $value,
		how => $how,
		took => time - $started,
		hits => stat_of($replica, 'hits') - $hits,
		executions => stat_of($replica, 'executions') - $executions
	};
}

# The replica's call is a hit on the rows the leader stored in Valkey.
sub replica_hits
{
	my ($key, $query, $rows, $what) = @_;
	my $r = replica_call($key, $query);
	is($r->{value}, $rows, "$what: the replica reads the leader's rows");
	is($r->{how}, 'hit', "$what: stampede.last_call on the replica says hit")
	  or diag(sprintf('it took %.2f s', $r->{took}));
	is($r->{hits}, 1, "$what: the replica counted a hit");
	is($r->{executions}, 0, "$what: the replica ran nothing");
}

# Is a process started by IPC::Run still running?  (Reads what it wrote.)
sub still_running
{
	my ($h) = @_;
	return 0 unless $h->pumpable;
	eval { $h->pump_nb };
	return $h->pumpable;
}

# ---- 5. the backoff settings are superuser-only ----
sub backoff_superuser_only
{
	foreach my $setting ('stampede.backoff_base', 'stampede.backoff_max')
	{
		my ($rc, $out, $err) = $primary->psql('postgres',
			"\\set VERBOSITY verbose\nSET $setting = '1ms';",
			extra_params => [ '-U', 'tap_plain' ]);
		like($err, qr/ERROR:\s+42501/, "a non-superuser may not SET $setting (42501)")
		  or diag("exit $rc: $err");
	}
	my ($rc, $out, $err) = $primary->psql('postgres',
		"SET stampede.max_wait = '1s'; SHOW stampede.max_wait;",
		extra_params => [ '-U', 'tap_plain' ]);
	is($out, '1s', 'the same role may still SET stampede.max_wait') or diag($err);
	is( $primary->safe_psql('postgres',
			"SET stampede.backoff_base = '1ms'; SHOW stampede.backoff_base;"),
		'1ms', 'a superuser may SET stampede.backoff_base');
}

# ---- 1a. a connection dropped while the leader's query ran ----

# By the idle timeout: the leader's connection idles through a 2.5 s query.
sub idle_timeout
{
	$valkey->cli('FLUSHALL');
	$valkey->cli('CONFIG', 'SET', 'timeout', '1');
	my $slow = 'SELECT 25::bigint AS run FROM pg_sleep(2.5)';
	my ($leader) = start_call($primary, call_sql('tap:idle', $slow));
	$primary->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
	  or die 'the slow leader did not start';
	my $lock = the_lock();
	wait_output($leader, qr/^25$/m, 'stdout');
	unlike($leader->{stderr}, qr/not cached/,
		'idle timeout: the leader stored its rows (no "not cached" NOTICE)');
	is(join(' ', lock_keys()), '',
		'idle timeout: no Valkey lock is left once the leader returned');
	$valkey->cli('CONFIG', 'SET', 'timeout', '0');
	replica_hits('tap:idle', $slow, '25', 'idle timeout');
	$leader->quit;
}

# By CLIENT KILL while the leader waits at the gate.
sub client_kill
{
	$valkey->cli('FLUSHALL');
	my $gate = close_gate($primary, $GATE);
	my ($leader) = leader_on_primary('tap:killed');
	the_lock();
	my $killed = $valkey->cli('CLIENT', 'KILL', 'TYPE', 'normal');
	ok($killed >= 1, "CLIENT KILL TYPE normal dropped $killed connections (the leader's among them)");
	open_gate($gate);
	wait_output($leader, qr/^\d+$/m, 'stdout');
	my ($rows) = $leader->{stdout} =~ /^(\d+)$/m;
	unlike($leader->{stderr}, qr/not cached/,
		'CLIENT KILL: the leader stored its rows (no "not cached" NOTICE)');
	is(join(' ', lock_keys()), '', 'CLIENT KILL: no Valkey lock is left once the leader returned');
	replica_hits('tap:killed', $gated, $rows, 'CLIENT KILL');
	$leader->quit;
}

# ---- 1b. the leader's store fails: its lease is dropped, its lock goes ----
sub client_pause
{
	$valkey->cli('FLUSHALL');
	my $gate = close_gate($primary, $GATE);
	my ($leader) = leader_on_primary('tap:paused');
	my $lock = the_lock();
	my $read_at = time;
	my $pttl = $valkey->cli('PTTL', $lock);
	# The latest the lock would expire by itself, with no renewal from now on.
	my $expires_at = $read_at + $pttl / 1000;
	my $pause = 1;    # > stampede.valkey_timeout, < what the lock has left
	my $paused_at = time;
	is($valkey->cli('CLIENT', 'PAUSE', $pause * 1000, 'ALL'), 'OK', 'CLIENT PAUSE 1000 ALL');
	my $opened = time;
	open_gate($gate);
	my $returned = wait_output($leader, qr/^\d+$/m, 'stdout');
	ok($returned - $opened < $valkey_timeout + 1,
		sprintf('CLIENT PAUSE: the leader returned its rows %.2f s after the gate opened '
			  . '(bound: stampede.valkey_timeout + 1 s)', $returned - $opened));

	# Sample the lock's PTTL: the first answer comes when the pause ends.
	my $answered_at;
	my ($gone_at, $pushed_up, $last) = (undef, '', undef);
	my $deadline = $paused_at + $pause + $lock_timeout + 0.5;
	while (time < $deadline)
	{
		my $now = $valkey->cli('PTTL', $lock);
		$answered_at //= time;
		if ($now == -2)
		{
			$gone_at = time;
			last;
		}
		$pushed_up .= " $last->$now" if defined $last && $now > $last + 100;
		$last = $now;
		sleep(0.05);
	}
	my $pause_end = $paused_at + $pause;
	ok(defined $gone_at && $gone_at <= $pause_end + $lock_timeout,
		defined $gone_at
		? sprintf('CLIENT PAUSE: the lock went %.2f s after the pause ended (bound: stampede.lock_timeout, 3 s)',
			$gone_at - $pause_end)
		: sprintf('CLIENT PAUSE: the lock went within stampede.lock_timeout of the pause (still there after %.1f s, PTTL %s)',
			time - $pause_end, $last // '?'));
	is($pushed_up, '', "CLIENT PAUSE: the lock's PTTL was never pushed up again");
	ok(defined $gone_at && $gone_at < $expires_at - 0.1,
		defined $gone_at
		? sprintf('CLIENT PAUSE: the lock was released %.2f s after Valkey answered, %.2f s before it would have expired',
			$gone_at - $answered_at, $expires_at - $gone_at)
		: 'CLIENT PAUSE: the lock was released once Valkey answered, before it would have expired');
	is(join(' ', lock_keys()), '', 'CLIENT PAUSE: no Valkey lock is left');

	my $r = replica_call('tap:paused', $gated);
	like($r->{value}, qr/^\d+$/, 'CLIENT PAUSE: a new call on the replica returns its rows');
	is($r->{how}, 'led', 'CLIENT PAUSE: the new call on the replica led (ran and stored) at once')
	  or diag(sprintf('it took %.2f s', $r->{took}));
	is($r->{executions}, 1, 'CLIENT PAUSE: the new call on the replica ran the query once');
	$leader->quit;
}

# ---- 3. stampede_invalidate while this backend's circuit is open ----
sub invalidate_circuit_open
{
	$valkey->cli('FLUSHALL');
	my $query = 'SELECT v::bigint AS run FROM tap_inval';
	my $call = call_sql('tap:inval', $query);
	my $s = $primary->background_psql('postgres', on_error_stop => 0);
	# Long enough for the steps below to find the circuit open.
	$s->query_safe("SET stampede.valkey_retry_interval = '3s'");
	is($s->query_safe($call), '1', 'invalidation: the value is 1');
	my @entries = entry_keys();
	is(scalar(@entries), 1, 'invalidation: the rows are in Valkey');
	my $entry = $entries[0] // 'none';

	# One command of this session times out: its circuit opens.
	my $sleeper = $valkey->cli_start('DEBUG', 'SLEEP', '1.5');
	foreach (1 .. 100)
	{
		last unless $valkey->answers;
		sleep(0.02);
	}
	my $errors = stat_of($primary, 'valkey_errors');
	my ($out) = session_query($s, $call);
	is($out, '1', 'invalidation: during DEBUG SLEEP the call falls back (and keeps a local copy)');
	my ($circuit) = session_query($s, 'SELECT valkey_circuit FROM stampede_status()');
	is($circuit, 'open', "invalidation: the session's circuit is open");
	ok(stat_of($primary, 'valkey_errors') > $errors, 'invalidation: the timeout was counted');

	$s->query_safe('UPDATE tap_inval SET v = 2');
	my ($removed, $err) = session_query($s, "SELECT stampede_invalidate('tap:inval')");
	is($removed, 'f', 'invalidation with the circuit open returns false');
	like($err, qr/WARNING:.*could not reach Valkey/, 'invalidation with the circuit open warns')
	  or diag("stderr: $err");
	my $ran = stat_of($primary, 'executions');
	($out) = session_query($s, $call);
	is($out, '2', 'invalidation: the local copy is gone (the next call, still off Valkey, reads 2)');
	is(stat_of($primary, 'executions') - $ran, 1, 'invalidation: that call ran the query');
	$sleeper->finish;

	# Valkey answers again: the invalidation must reach it (the lease worker,
	# or this session's next call: one on another key each round).
	my $gone = 0;
	my $deadline = time + 1.5 + 3 + 3;
	while (time < $deadline)
	{
		if ($valkey->cli('EXISTS', $entry) eq '0')
		{
			$gone = 1;
			last;
		}
		session_query($s, call_sql('tap:nudge', 'SELECT 1::bigint AS run'));
		sleep(0.2);
	}
	ok($gone, "invalidation: once Valkey answers, the key's entry is gone from Valkey");
	$s->quit;

	$primary->wait_for_catchup($replica);
	my $r = replica_call('tap:inval', $query);
	is($r->{value}, '2', 'invalidation: the replica then reads the new value');
	is($primary->safe_psql('postgres', $call), '2', 'invalidation: the primary then reads the new value');
}

# ---- 2. 20 clients over both servers through DEBUG SLEEP and CLIENT PAUSE ----
sub load
{
	$valkey->cli('FLUSHALL');
	my $clients = 10;
	my $transactions = 30;
	my $wrong = "$valkey_dir/wrong_rows";
	my $script = "$valkey_dir/load.sql";
	# A handful of keys (4), each invalidated now and then by the clients
	# themselves (one transaction in 8), so that flights run all along, and
	# a lock that is never let go holds up every later call of its key.
	# Each row must be its key's.
	PostgreSQL::Test::Utils::append_to_file($script,
		"\\set k random(1, 4)\n"
		  . "\\set inv random(1, 8)\n"
		  . "\\if :inv = 1\n"
		  . "SELECT stampede_invalidate('tap:load:' || :k);\n"
		  . "\\endif\n"
		  . "SELECT run FROM stampede_cached('tap:load:' || :k, "
		  . "\$q\$SELECT :k::bigint AS run FROM pg_sleep(0.2)\$q\$, '5 minutes') AS t(run bigint) \\gset\n"
		  . "\\if :run != :k\n"
		  . "\\shell echo key :k got :run >> $wrong\n"
		  . "SELECT 1 / 0;\n"
		  . "\\endif\n"
		  . "\\sleep 100 ms\n");
	my @runs;
	foreach my $node ($primary, $replica)
	{
		my ($out, $err) = ('', '');
		push @runs,
		  [
			IPC::Run::start(
				[
					'env', 'PGAPPNAME=tap_load', 'pgbench', '-n', '-c', $clients, '-j', '2', '-t', $transactions,
					'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres'
				],
				'>', \$out, '2>', \$err),
			\$out, \$err, $node
		  ];
	}
	my $started = time;
	# Both pgbench runs connected (or one ended already: then say why).
	foreach my $run (@runs)
	{
		my ($h, $out, $err, $node) = @$run;
		my $connected = 0;
		while (!$connected && time < $started + 20)
		{
			die 'pgbench on the ' . $node->name . " ended at once:\n$$out$$err"
			  unless still_running($h);
			$connected = $node->safe_psql('postgres',
				"SELECT count(*) >= $clients FROM pg_stat_activity WHERE application_name = 'tap_load'")
			  eq 't';
			sleep(0.05) unless $connected;
		}
		die 'pgbench on the ' . $node->name . " did not connect:\n$$out$$err" unless $connected;
	}
	# The faults, each one once the load has run a while (fixed waits: the
	# load runs by itself, nothing here is ordered by them).
	sleep(1);
	$valkey->cli('DEBUG', 'SLEEP', '2');
	sleep(1);
	$valkey->cli('CLIENT', 'PAUSE', '1500', 'ALL');
	sleep(1.5);
	my $faults_done = time;
	ok((grep { still_running($_->[0]) } @runs) == 2,
		sprintf('load: pgbench still ran on both servers when the faults ended (%.1f s)',
			$faults_done - $started));

	# Every client must finish; the bound is generous, a stuck one never does.
	my $deadline = $started + 30;
	sleep(0.1) while time < $deadline && grep { still_running($_->[0]) } @runs;
	my $stuck = 0;
	foreach my $node ($primary, $replica)
	{
		$stuck += $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
			  . "AND query LIKE '%stampede_cached%' AND pid <> pg_backend_pid()");
	}
	is($stuck, 0, 'load: no backend is still in a stampede call on either server');
	foreach my $run (@runs)
	{
		my ($h, $out, $err, $node) = @$run;
		my $name = $node->name;
		if (still_running($h))
		{
			$h->kill_kill;
			fail("load: pgbench on the $name finished (killed after 30 s)");
		}
		else
		{
			$h->finish;
			note sprintf("pgbench on the %s had ended %.1f s after the start:\n%s%s",
				$name, time - $started, $$out, $$err);
			is(($h->results)[0], 0, "load: pgbench on the $name exited 0")
			  or diag($$out . $$err);
		}
		like($$out, qr{number of transactions actually processed: (\d+)/\1\b},
			"load: pgbench on the $name processed every transaction")
		  or diag($$out);
	}
	# Clean up after a stuck run, so that scenario 4 starts clean.
	$_->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tap_load'")
	  foreach ($primary, $replica);
	my $wrong_rows = 0;
	$wrong_rows = () = PostgreSQL::Test::Utils::slurp_file($wrong) =~ /\n/g if -e $wrong;
	is($wrong_rows, 0, 'load: no wrong rows')
	  or diag(PostgreSQL::Test::Utils::slurp_file($wrong));

	my $gone = 0;
	my $until = time + $lock_timeout + 2;
	while (time < $until)
	{
		if (!lock_keys())
		{
			$gone = 1;
			last;
		}
		sleep(0.1);
	}
	ok($gone, 'load: no Valkey lock is left (within stampede.lock_timeout + 2 s)')
	  or diag('left: ' . join(' ', map { "$_ (PTTL " . $valkey->cli('PTTL', $_) . ')' } lock_keys()));
}

# ---- 4. an outage, an invalidation elsewhere, a second outage ----
sub outage_round
{
	my ($key, $table, $notice) = @_;
	my $query = "SELECT v::bigint AS run FROM $table";
	my $call = call_sql($key, $query);
	my $what = $notice ? 'the primary noticed Valkey back' : 'the primary made no call in between';

	$valkey->stop;
	my $errors = stat_of($primary, 'valkey_errors');
	is($primary->safe_psql('postgres', $call), '1', "outage ($what): the primary reads 1");
	ok(stat_of($primary, 'valkey_errors') > $errors,
		"outage ($what): the primary fell back (a local copy of 1)");

	$valkey->start;
	my $up_at = time;
	if ($notice)
	{
		$primary->poll_query_until('postgres', 'SELECT mode = $$valkey$$ FROM stampede_status()')
		  or die 'the primary did not use Valkey again';
		is( $primary->safe_psql('postgres',
				call_sql('tap:notice', 'SELECT 7::bigint AS run') . ";\nSHOW stampede.last_call;"),
			"7\nled", "outage ($what): a call on the primary went through Valkey");
		ok(scalar(entry_keys()) >= 1, "outage ($what): its rows are in Valkey");
	}
	$primary->safe_psql('postgres', "UPDATE $table SET v = 2");
	$primary->wait_for_catchup($replica);
	$replica->safe_psql('postgres', "SELECT stampede_invalidate('$key')");
	# Valkey stays up about a second in all.
	sleep($up_at + 1 - time) if time < $up_at + 1;
	$valkey->stop;

	is($primary->safe_psql('postgres', $call), '2',
		"second outage ($what): the primary reads 2, not its local copy of 1");
}

sub outages
{
	outage_round('tap:outage', 'tap_outage', 1);
	outage_round('tap:outage2', 'tap_outage2', 0);
}

# In this order: the outages restart Valkey.  STAMPEDE_TAP_ONLY (names,
# comma-separated) runs some of them only, while working on one.
my @scenarios = qw(backoff_superuser_only idle_timeout client_kill client_pause
  invalidate_circuit_open load outages);
my %only = map { $_ => 1 } split /,/, ($ENV{STAMPEDE_TAP_ONLY} // '');
foreach my $scenario (@scenarios)
{
	next if %only && !$only{$scenario};
	note "---- $scenario";
	no strict 'refs';
	&$scenario();
}

$valkey->stop;
done_testing();
